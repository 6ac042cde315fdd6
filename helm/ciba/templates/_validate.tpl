{{/*
Impossible combinations stop the render with a message that says what to change.
Types and formats are values.schema.json's job; these are the rules that span values.
*/}}
{{- define "ciba.validate" -}}
{{- $v := .Values }}
{{- $sqlite := eq $v.database.type "sqlite" }}
{{- if not $v.config.issuer }}
{{- fail "config.issuer is required: the public URL of the service, e.g. https://auth.example.com" }}
{{- end }}
{{- if $sqlite }}
{{- if gt (int $v.api.replicaCount) 1 }}
{{- fail (printf "database.type=sqlite allows exactly one api pod (api.replicaCount is %d): SQLite has one writer and its file one pod. Use database.type=postgres to run more." (int $v.api.replicaCount)) }}
{{- end }}
{{- if $v.api.autoscaling.enabled }}
{{- fail "database.type=sqlite cannot autoscale the api (api.autoscaling.enabled=true): SQLite has one writer. Use database.type=postgres." }}
{{- end }}
{{- if and $v.worker.enabled (eq $v.worker.placement "deployment") }}
{{- fail "database.type=sqlite cannot run the worker in a separate pod (worker.placement=deployment): the database file is on the api pod's volume. Use worker.placement=auto (the worker runs in the api pod) or database.type=postgres." }}
{{- end }}
{{- if $v.database.url }}
{{- fail "database.url is for PostgreSQL; with database.type=sqlite the file lives on the chart's volume. Remove database.url or set database.type=postgres." }}
{{- end }}
{{- else }}
{{- if and (not $v.database.url) (not $v.secrets.existingSecret) }}
{{- fail "database.type=postgres needs a connection URL: set database.url, or secrets.existingSecret naming a Secret with a DATABASE_URL key." }}
{{- end }}
{{- end }}
{{- if $v.secrets.existingSecret }}
{{- if or $v.database.url $v.secrets.keyEncryptionKey }}
{{- fail (printf "secrets.existingSecret=%s holds DATABASE_URL and CIBA_KEY_ENCRYPTION_KEY: leave database.url and secrets.keyEncryptionKey empty (two sources of one secret are one too many)." $v.secrets.existingSecret) }}
{{- end }}
{{- if $v.config.externalIssuers }}
{{- fail (printf "with secrets.existingSecret, put the external issuers' JSON in that Secret's key %s and leave config.externalIssuers empty." $v.secrets.existingSecretKeys.externalIssuers) }}
{{- end }}
{{- else if not $v.secrets.keyEncryptionKey }}
{{- fail "secrets.keyEncryptionKey is required (32 random bytes, base64: `openssl rand -base64 32`), or set secrets.existingSecret. It encrypts the signing keys; keep a copy." }}
{{- end }}
{{- if and $v.mtls.clientCertHeader (not $v.config.trustedProxies) }}
{{- fail "mtls.clientCertHeader needs config.trustedProxies: the header is believed only from the ingress, so name its addresses there." }}
{{- end }}
{{- if and $v.mtls.clientCertHeader (not (and $v.networkPolicy.enabled $v.networkPolicy.apiFrom)) }}
{{- fail "mtls.clientCertHeader needs networkPolicy.enabled=true with networkPolicy.apiFrom naming the ingress controller: a certificate in a header proves nothing, so nothing but the ingress may reach the api's port (trustedProxies is usually the whole pod network)." }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.hosts) }}
{{- fail "ingress.enabled=true needs at least one entry in ingress.hosts." }}
{{- end }}
{{- if and $v.api.autoscaling.enabled (gt (int $v.api.autoscaling.minReplicas) (int $v.api.autoscaling.maxReplicas)) }}
{{- fail "api.autoscaling.minReplicas must not exceed api.autoscaling.maxReplicas." }}
{{- end }}
{{- end }}
