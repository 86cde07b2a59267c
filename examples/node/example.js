// Calling tokenbroker from Node.js, over gRPC (@grpc/grpc-js with
// @grpc/proto-loader) and over REST (fetch), and reading the error details
// of both. docs/clients.md explains each step; test/clients_test.go runs
// this file against a broker on loopback.
//
// Environment:
//   TOKENBROKER_GRPC     gRPC address, host:port (default 127.0.0.1:9090)
//   TOKENBROKER_HTTP     REST base URL (default http://127.0.0.1:8080)
//   TOKENBROKER_API_KEY  the caller's API key (unset: no Authorization, for
//                        a broker without clients, such as --dev)
//   TOKENBROKER_PROFILE  the profile to ask for (default demo-smartdocumentor)
//   TOKENBROKER_PROTO    the repository's proto/ directory (default ../../proto)
//
// It prints one JSON object: what each call returned. Never the token
// itself: its SHA-256 prefix, to compare the gRPC and the REST answers.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const googleProtoFiles = require('google-proto-files');

const grpcAddr = process.env.TOKENBROKER_GRPC || '127.0.0.1:9090';
const httpBase = process.env.TOKENBROKER_HTTP || 'http://127.0.0.1:8080';
const apiKey = process.env.TOKENBROKER_API_KEY || '';
const profile = process.env.TOKENBROKER_PROFILE || 'demo-smartdocumentor';
const protoDir = process.env.TOKENBROKER_PROTO || path.join(__dirname, '..', '..', 'proto');

// The options that give gRPC answers the shape of the REST JSON:
// keepCase keeps the proto field names (access_token, not accessToken),
// longs: String turns 64-bit integers (a Timestamp's seconds) into
// strings as proto3 JSON does instead of Long objects, enums: String
// names enum values, defaults: true fills unset fields with their zero
// value (cache_hit: false), oneofs: true names the set member.
const loaderOptions = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir],
};

const packageDefinition = protoLoader.loadSync('tokenbroker/v1/token_service.proto', loaderOptions);
const { TokenService } = grpc.loadPackageDefinition(packageDefinition).tokenbroker.v1;

// google.rpc.Status and its details (BadRequest, ErrorInfo, RetryInfo) are
// not in the broker's proto: they come from googleapis, here the
// google-proto-files package, decoded with protobufjs.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (_origin, target) => {
  if (target.startsWith('google/protobuf/')) {
    return target; // protobufjs knows the well-known types
  }
  return path.join(googleProtoFiles.getProtoPath('..'), target);
};
rpcTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const Status = rpcTypes.lookupType('google.rpc.Status');

// grpcErrorDetails decodes the google.rpc.Status the broker sends in the
// grpc-status-details-bin trailer into plain objects, each with its type.
function grpcErrorDetails(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) {
    return [];
  }
  const status = Status.decode(bin);
  return status.details.map((any) => {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = rpcTypes.lookupType(typeName);
    return { type: typeName, ...type.toObject(type.decode(any.value), { longs: String, enums: String }) };
  });
}

function credentials() {
  const md = new grpc.Metadata();
  if (apiKey) {
    md.set('authorization', `Bearer ${apiKey}`);
  }
  return md;
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10_000);
    client[method](request, credentials(), { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

const digest = (token) => crypto.createHash('sha256').update(token).digest('hex').slice(0, 16);

// A google.protobuf.Timestamp as proto-loader gives it (seconds a string,
// with longs: String) as an RFC 3339 string, as REST writes it.
const timestamp = (ts) => new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)).toISOString();

async function rest(pathName, body) {
  const headers = { 'content-type': 'application/json' };
  if (apiKey) {
    headers.authorization = `Bearer ${apiKey}`;
  }
  const resp = await fetch(httpBase + pathName, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: resp.status, body: await resp.json() };
}

async function main() {
  const client = new TokenService(grpcAddr, grpc.credentials.createInsecure());
  const out = {};
  try {
    // gRPC: a token.
    const token = await unary(client, 'GetToken', { profile, min_ttl: { seconds: 60 } });
    out.grpc = {
      token_sha256: digest(token.access_token),
      token_type: token.token_type,
      expires_in: token.expires_in,
      expires_at: timestamp(token.expires_at),
      cache_hit: token.cache_hit,
    };

    // gRPC: an error and its details.
    try {
      await unary(client, 'GetToken', { profile, params: { 'Not A Param': 'x' } });
      out.grpc_error = { unexpected: 'no error' };
    } catch (err) {
      out.grpc_error = { code: grpc.status[err.code], message: err.details, details: grpcErrorDetails(err) };
    }

    // REST: the same token, from the cache.
    const ok = await rest('/v1/token', { profile, min_ttl: '60s' });
    out.rest = {
      status: ok.status,
      token_sha256: digest(ok.body.access_token),
      token_type: ok.body.token_type,
      expires_in: ok.body.expires_in,
      expires_at: ok.body.expires_at,
      cache_hit: ok.body.cache_hit,
    };

    // REST: the same error, as google.rpc.Status JSON (details carry @type).
    const bad = await rest('/v1/token', { profile, params: { 'Not A Param': 'x' } });
    out.rest_error = { status: bad.status, code: bad.body.code, message: bad.body.message, details: bad.body.details };
  } finally {
    client.close();
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`example: ${err.stack || err}\n`);
  process.exit(1);
});
