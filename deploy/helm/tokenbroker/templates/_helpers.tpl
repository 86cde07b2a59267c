{{/* Names, labels and the broker's configuration file. */}}

{{- define "tokenbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenbroker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tokenbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenbroker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tokenbroker.selectorLabels" . }}
app.kubernetes.io/version: {{ include "tokenbroker.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokenbroker
{{- end -}}

{{- define "tokenbroker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenbroker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tokenbroker.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "tokenbroker.image" -}}
{{- if .Values.image.digest -}}
{{- if not (hasPrefix "sha256:" .Values.image.digest) -}}
{{- fail "image.digest must start with sha256:" -}}
{{- end -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "tokenbroker.tag" .) -}}
{{- end -}}
{{- end -}}

{{/*
Where the pod mounts things; the config refers to these paths. Siblings,
not nested in the ConfigMap volume: its updates replace its whole
directory.
*/}}
{{- define "tokenbroker.configDir" -}}/etc/tokenbroker/config{{- end -}}
{{- define "tokenbroker.secretsDir" -}}/etc/tokenbroker/secrets{{- end -}}
{{- define "tokenbroker.tlsDir" -}}/etc/tokenbroker/tls{{- end -}}
{{- define "tokenbroker.clientCADir" -}}/etc/tokenbroker/client-ca{{- end -}}
{{- define "tokenbroker.redisCADir" -}}/etc/tokenbroker/redis-ca{{- end -}}

{{- define "tokenbroker.secretFile" -}}
{{- printf "file:%s/%s" (include "tokenbroker.secretsDir" .root) .key -}}
{{- end -}}

{{- define "tokenbroker.tlsEnabled" -}}
{{- if .Values.tls.secretName -}}true{{- end -}}
{{- end -}}

{{- define "tokenbroker.clientCASecret" -}}
{{- default .Values.tls.secretName .Values.tls.clientCA.secretName -}}
{{- end -}}

{{/*
tokenbroker.callersConfigured is "true" when the broker will authenticate
callers (or is told not to): without it the broker refuses to start on
the pod IP, so the chart refuses to render instead of crash-looping. A new
way for callers to authenticate belongs in this condition.
*/}}
{{- define "tokenbroker.callersConfigured" -}}
{{- if or .Values.config.clients .Values.tls.clientCA.enabled .Values.insecureAllowUnauthenticated -}}true{{- end -}}
{{- end -}}

{{/*
tokenbroker.config renders tokenbroker.yaml: .Values.config with the
listeners, TLS, Redis and encryption keys the chart manages.
*/}}
{{- define "tokenbroker.config" -}}
{{- if not (include "tokenbroker.callersConfigured" .) -}}
{{- fail "no callers are configured, and the broker refuses to serve tokens on the pod IP to anyone who can reach it: set config.clients (a caller's api_key_sha256 or cert_subject, and its allow list; docs/operations.md), tls.clientCA.enabled with tls.secretName for mTLS callers, or insecureAllowUnauthenticated=true behind a NetworkPolicy (a demo)" -}}
{{- end -}}
{{- $cfg := deepCopy (default dict .Values.config) -}}
{{- range $key := list "grpc_addr" "http_addr" "tls" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart (ports, tls): remove it from config" $key) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "grpc_addr" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) -}}
{{- $_ := set $cfg "http_addr" (printf "0.0.0.0:%d" (int .Values.ports.http)) -}}
{{- if include "tokenbroker.tlsEnabled" . -}}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "tokenbroker.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "tokenbroker.tlsDir" .)) -}}
{{- if .Values.tls.clientCA.enabled -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" (include "tokenbroker.clientCADir" .) .Values.tls.clientCA.key) -}}
{{- end -}}
{{- $_ := set $cfg "tls" $tls -}}
{{- else if .Values.tls.clientCA.enabled -}}
{{- fail "tls.clientCA.enabled needs tls.secretName (mTLS is TLS)" -}}
{{- end -}}
{{- with .Values.workloadIdentity.jwtIssuers -}}
{{- $auth := default dict (get $cfg "auth") -}}
{{- if hasKey $auth "jwt_issuers" -}}
{{- fail "set the JWT issuers in workloadIdentity.jwtIssuers or config.auth.jwt_issuers, not both" -}}
{{- end -}}
{{- $_ := set $auth "jwt_issuers" . -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- end -}}
{{- $cache := default dict (get $cfg "cache") -}}
{{- range $key := list "redis" "encryption_keys" -}}
{{- if hasKey $cache $key -}}
{{- fail (printf "config.cache.%s is set by the chart: use the values redis and encryptionKeys" $key) -}}
{{- end -}}
{{- end -}}
{{- if .Values.encryptionKeys -}}
{{- if not .Values.existingSecret -}}
{{- fail "encryptionKeys name keys of existingSecret: set existingSecret" -}}
{{- end -}}
{{- $keys := list -}}
{{- range .Values.encryptionKeys -}}
{{- $keys = append $keys (include "tokenbroker.secretFile" (dict "root" $ "key" .)) -}}
{{- end -}}
{{- $_ := set $cache "encryption_keys" $keys -}}
{{- end -}}
{{- with .Values.redis -}}
{{- if .addrs -}}
{{- $redis := dict "addrs" .addrs -}}
{{- if .masterName -}}{{- $_ := set $redis "master_name" .masterName -}}{{- end -}}
{{- if .username -}}{{- $_ := set $redis "username" .username -}}{{- end -}}
{{- if .sentinelUsername -}}{{- $_ := set $redis "sentinel_username" .sentinelUsername -}}{{- end -}}
{{- range $field, $key := dict "password" .passwordKey "sentinel_password" .sentinelPasswordKey -}}
{{- if $key -}}
{{- if not $.Values.existingSecret -}}
{{- fail (printf "redis: the %s is a key of existingSecret: set existingSecret" $field) -}}
{{- end -}}
{{- $_ := set $redis $field (include "tokenbroker.secretFile" (dict "root" $ "key" $key)) -}}
{{- end -}}
{{- end -}}
{{- if .db -}}{{- $_ := set $redis "db" (int .db) -}}{{- end -}}
{{- if .allowEviction -}}{{- $_ := set $redis "allow_eviction" true -}}{{- end -}}
{{- if .tls.enabled -}}
{{- $_ := set $redis "tls" true -}}
{{- if .tls.caSecretName -}}
{{- $_ := set $redis "tls_ca_file" (printf "%s/%s" (include "tokenbroker.redisCADir" $) .tls.caKey) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cache "redis" $redis -}}
{{- if and (not $.Values.encryptionKeys) (not (get $cache "allow_plaintext")) -}}
{{- fail "redis needs encryptionKeys (or config.cache.allow_plaintext: true, which leaves clear tokens in Redis)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $cache -}}
{{- $_ := set $cfg "cache" $cache -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
tokenbroker.memoryBytes turns a Kubernetes memory quantity ("256Mi",
"1G", "268435456") into bytes.
*/}}
{{- define "tokenbroker.memoryBytes" -}}
{{- $q := toString . -}}
{{- $digits := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $digits $q -}}
{{- $mult := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if or (not $digits) (not (hasKey $mult $unit)) -}}
{{- fail (printf "resources.limits.memory %q: write a whole number with an optional unit (Mi, Gi, M, G...) so the chart can derive GOMEMLIMIT, or set goMemLimitPercent: 0" $q) -}}
{{- end -}}
{{- mul (int64 $digits) (get $mult $unit) -}}
{{- end -}}
