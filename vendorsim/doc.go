// Package vendorsim is a strict simulator of the token endpoints of the
// vendors tokenbroker supports, for unit tests, `server --dev`, benchmarks and
// docker-compose. One [Sim] serves every vendor on one listener, routed by the
// first path segment (the vendor id of docs/design.md, Vendors):
//
//	POST /hotdocs_advance/{tenancy}/auth/Authorize/ServicePrincipalLogIn
//	POST /hotdocs_advance/{tenancy}/HdaAuth/Authorize/ServicePrincipalLogIn
//	POST /smartdocumentor/connect/token
//	POST /abbyy_vantage/{region}/auth2/connect/token
//	POST /abbyy_vantage/{region}/auth2/{tenantId}/connect/token
//	POST /brightpattern/{host}/configapi/v2/oauth/token
//	POST /saasu/authorisation/token
//	POST /saasu/authorisation/refresh
//	POST /oauth2/token
//
// The wire formats imitate the vendors' documents (docs/design.md, Vendors), byte for byte where a
// document shows an example:
//
//   - HotDocs Advance, "Getting an Access Token Using the Resource Owner Flow":
//     https://help.hotdocs.com/advance/cloud/current/admin/Getting_an_Access_Token_Using_the_Resource_Owner_Flow.htm
//     (on-premise: https://help.hotdocs.com/advance/onpremise/current/admin/Getting_an_Access_Token_Using_the_Resource_Owner_Flow.htm)
//   - SmartDocumentor, "[POST] Client Credentials Access Token":
//     https://docs.smartdocumentor.net/technical/api-reference/post-client-credentials-access-token
//   - ABBYY Vantage, "Resource Owner Password Credentials" and "Client Credentials Flow":
//     https://docs.abbyy.com/vantage/developer/authentication/resource-owner-password-credentials
//     https://docs.abbyy.com/vantage/developer/authentication/client-credentials
//   - Bright Pattern Configuration API, "Request Access Token":
//     https://help.brightpattern.com/5.2:User-management-api-specification/RequestAccessToken
//   - Saasu, "POST authorisation/token" (API help pages, see also
//     https://api.saasu.com/Help/Authentication)
//   - the generic endpoint follows RFC 6749, The OAuth 2.0 Authorization Framework:
//     https://www.rfc-editor.org/rfc/rfc6749
//
// The simulator is strict on purpose: a wrong method, content type, grant,
// scope or secret, and a missing, unknown or repeated parameter, each get the
// error the vendor documents (or RFC 6749 section 5.2 where it documents
// none), never a 200. Where the documents are silent the behaviour chosen is
// written next to the code that implements it.
package vendorsim
