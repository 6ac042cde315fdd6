{{/* Names. */}}
{{- define "ciba.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ciba.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's resources: "<fullname>-api", "<fullname>-worker", ... */}}
{{- define "ciba.componentName" -}}
{{- printf "%s-%s" (include "ciba.fullname" .root | trunc 55 | trimSuffix "-") .component }}
{{- end }}

{{/* Labels. */}}
{{- define "ciba.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ciba.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ciba.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ciba.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "ciba.componentLabels" -}}
{{ include "ciba.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ciba.componentSelectorLabels" -}}
{{ include "ciba.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference: a digest pins it, else the tag (default: appVersion). */}}
{{- define "ciba.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ciba.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ciba.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the worker runs: "deployment", "sidecar" (in the api pod) or "none". */}}
{{- define "ciba.workerPlacement" -}}
{{- if not .Values.worker.enabled }}none
{{- else if ne .Values.worker.placement "auto" }}{{ .Values.worker.placement }}
{{- else if eq .Values.database.type "sqlite" }}sidecar
{{- else }}deployment
{{- end }}
{{- end }}

{{- define "ciba.sqlite" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end }}
{{- end }}

{{/* The Secret the pods read: the existing one, or the chart's. */}}
{{- define "ciba.secretName" -}}
{{- default (include "ciba.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Secret keys inside that Secret. */}}
{{- define "ciba.secretKey" -}}
{{- if .root.Values.secrets.existingSecret }}
{{- index .root.Values.secrets.existingSecretKeys .key }}
{{- else }}
{{- index (dict "databaseUrl" "DATABASE_URL" "keyEncryptionKey" "CIBA_KEY_ENCRYPTION_KEY" "externalIssuers" "CIBA_EXTERNAL_ISSUERS") .key }}
{{- end }}
{{- end }}

{{/*
Environment from Secrets: DATABASE_URL (postgres), CIBA_KEY_ENCRYPTION_KEY, and
CIBA_EXTERNAL_ISSUERS when configured. (dict "root" $ "secretName" NAME)
*/}}
{{- define "ciba.secretEnv" -}}
{{- $root := .root }}
{{- if not (include "ciba.sqlite" $root) }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ include "ciba.secretKey" (dict "root" $root "key" "databaseUrl") }}
{{- end }}
- name: CIBA_KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ include "ciba.secretKey" (dict "root" $root "key" "keyEncryptionKey") }}
{{- if $root.Values.secrets.existingSecret }}
- name: CIBA_KEY_ENCRYPTION_KEY_PREVIOUS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $root.Values.secrets.existingSecretKeys.keyEncryptionKeyPrevious }}
      optional: true
{{- else if $root.Values.secrets.keyEncryptionKeyPrevious }}
- name: CIBA_KEY_ENCRYPTION_KEY_PREVIOUS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: CIBA_KEY_ENCRYPTION_KEY_PREVIOUS
{{- end }}
{{- if $root.Values.secrets.existingSecret }}
- name: CIBA_EXTERNAL_ISSUERS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $root.Values.secrets.existingSecretKeys.externalIssuers }}
      optional: true
{{- else if $root.Values.config.externalIssuers }}
- name: CIBA_EXTERNAL_ISSUERS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: CIBA_EXTERNAL_ISSUERS
{{- end }}
{{- end }}

{{/* The Secret's data (the chart's Secret and the migration hook's copy share it). */}}
{{- define "ciba.secretData" -}}
{{- if not (include "ciba.sqlite" .) }}
DATABASE_URL: {{ .Values.database.url | b64enc | quote }}
{{- end }}
CIBA_KEY_ENCRYPTION_KEY: {{ .Values.secrets.keyEncryptionKey | b64enc | quote }}
{{- with .Values.secrets.keyEncryptionKeyPrevious }}
CIBA_KEY_ENCRYPTION_KEY_PREVIOUS: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.config.externalIssuers }}
CIBA_EXTERNAL_ISSUERS: {{ toJson . | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Pod-level settings every pod shares. */}}
{{- define "ciba.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* SIGTERM budget: preStop sleep + the binaries' own shutdown timeout + a margin. */}}
{{- define "ciba.terminationGracePeriod" -}}
{{- add (int .Values.api.preStopSleepSeconds) (int .Values.config.shutdownTimeout) 10 }}
{{- end }}

{{/* The worker container (own Deployment or beside the api). */}}
{{- define "ciba.workerContainer" -}}
- name: worker
  image: {{ include "ciba.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["ciba-worker"]
  envFrom:
    - configMapRef:
        name: {{ include "ciba.fullname" . }}
  env:
    {{- include "ciba.secretEnv" (dict "root" . "secretName" (include "ciba.secretName" .)) | trim | nindent 4 }}
  ports:
    - name: worker-metrics
      containerPort: {{ .Values.metrics.workerPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: worker-metrics
    periodSeconds: 2
    failureThreshold: 45
  livenessProbe:
    httpGet:
      path: /healthz
      port: worker-metrics
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /healthz
      port: worker-metrics
    periodSeconds: 10
    timeoutSeconds: 2
  resources:
    {{- toYaml .Values.worker.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if include "ciba.sqlite" . }}
    - name: data
      mountPath: /var/lib/ciba
    {{- end }}
{{- end }}

{{/* Annotations that roll pods when their configuration changes. */}}
{{- define "ciba.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}
