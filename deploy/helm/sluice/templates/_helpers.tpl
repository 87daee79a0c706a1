{{/* Names. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
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

{{/* "<fullname>-<component>", within 63 characters. */}}
{{- define "sluice.component" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Labels of chart-wide objects (config, accounts). */}}
{{- define "sluice.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.configSecretName" -}}
{{- default (include "sluice.component" (dict "root" . "component" "config")) .Values.existingConfigSecret -}}
{{- end -}}

{{- define "sluice.queryTokensSecretName" -}}
{{- default (include "sluice.component" (dict "root" . "component" "query-tokens")) .Values.query.tokens.existingSecret -}}
{{- end -}}

{{- define "sluice.intakeTokensSecretName" -}}
{{- default (include "sluice.component" (dict "root" . "component" "intake-tokens")) .Values.collector.intake.tokensSecret -}}
{{- end -}}

{{/* SLUICE_COLLECTOR__INTAKE_TOKENS from the intake tokens Secret (a list item). */}}
{{- define "sluice.intakeTokensEnv" -}}
- name: SLUICE_COLLECTOR__INTAKE_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "sluice.intakeTokensSecretName" . }}
      key: {{ .Values.collector.intake.tokensKey }}
{{- end -}}

{{- define "sluice.directoryConfigMapName" -}}
{{- default (include "sluice.component" (dict "root" . "component" "directory")) .Values.enrich.existingConfigMap -}}
{{- end -}}

{{- define "sluice.directoryEnabled" -}}
{{- if or .Values.enrich.directory .Values.enrich.existingConfigMap -}}true{{- end -}}
{{- end -}}

{{/*
Checks of values that a schema cannot express; rendered by every workload
template so that `helm template` and `helm install` fail with the reason.
*/}}
{{- define "sluice.validate" -}}
{{- if and .Values.writer.enabled (gt (int .Values.writer.replicas) (int .Values.kafka.partitions)) -}}
{{- fail (printf "writer.replicas (%d) > kafka.partitions (%d): writers share each topic's partitions, so the extra writers would get none and never become ready. Add partitions to the topics (and raise kafka.partitions) or run fewer writers." (int .Values.writer.replicas) (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) -}}
{{- fail "kafka.tls.enabled needs kafka.tls.existingSecret (a Secret with ca.crt, and tls.crt/tls.key for clientAuth)" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.existingConfigSecret) (or (not .Values.kafka.sasl.username) (not .Values.kafka.sasl.password)) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username and kafka.sasl.password (or an existingConfigSecret holding them)" -}}
{{- end -}}
{{- if and (eq .Values.catalog.kind "postgres") (not .Values.catalog.postgres.existingSecret) -}}
{{- fail "catalog.kind postgres needs catalog.postgres.existingSecret (a Secret with the postgres:// URI)" -}}
{{- end -}}
{{- if and (eq .Values.catalog.kind "rest") (not .Values.catalog.rest.uri) -}}
{{- fail "catalog.kind rest needs catalog.rest.uri" -}}
{{- end -}}
{{- if and .Values.catalog.rest.existingSecret (not (or .Values.catalog.rest.tokenKey .Values.catalog.rest.credentialKey)) -}}
{{- fail "catalog.rest.existingSecret needs catalog.rest.tokenKey or catalog.rest.credentialKey" -}}
{{- end -}}
{{- if not (or (hasPrefix "s3://" .Values.warehouse.location) (hasPrefix "s3a://" .Values.warehouse.location)) -}}
{{- fail (printf "warehouse.location %q: the pods share one warehouse, so it must be an object store (s3://bucket/prefix)" .Values.warehouse.location) -}}
{{- end -}}
{{- end -}}

{{/* The environment every sluice container gets: configuration and secrets. */}}
{{- define "sluice.env" -}}
- name: SLUICE_CONFIG
  value: /etc/sluice/config/sluice.toml
- name: SLUICE_DATA_DIR
  value: /var/lib/sluice
- name: SLUICE_HTTP
  value: {{ printf "0.0.0.0:%d" (int .Values.port) | quote }}
- name: TMPDIR
  value: /tmp
{{- if eq .Values.catalog.kind "postgres" }}
- name: SLUICE_CATALOG__URI
  valueFrom:
    secretKeyRef:
      name: {{ .Values.catalog.postgres.existingSecret }}
      key: {{ .Values.catalog.postgres.uriKey }}
{{- end }}
{{- if and (eq .Values.catalog.kind "rest") .Values.catalog.rest.existingSecret }}
{{- if .Values.catalog.rest.tokenKey }}
- name: SLUICE_CATALOG__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.catalog.rest.existingSecret }}
      key: {{ .Values.catalog.rest.tokenKey }}
{{- end }}
{{- if .Values.catalog.rest.credentialKey }}
- name: SLUICE_CATALOG__CREDENTIAL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.catalog.rest.existingSecret }}
      key: {{ .Values.catalog.rest.credentialKey }}
{{- end }}
{{- end }}
{{- if .Values.warehouse.s3.existingSecret }}
- name: SLUICE_WAREHOUSE__S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.warehouse.s3.existingSecret }}
      key: {{ .Values.warehouse.s3.accessKeyIdKey }}
- name: SLUICE_WAREHOUSE__S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.warehouse.s3.existingSecret }}
      key: {{ .Values.warehouse.s3.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/*
Volumes every sluice pod gets (with sluice.volumeMounts). Arguments: root,
tmpSizeLimit (of /tmp: the query service spills sorts there).
*/}}
{{- define "sluice.volumes" -}}
{{- $root := .root }}
- name: config
  secret:
    secretName: {{ include "sluice.configSecretName" $root }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSizeLimit | default "1Gi" }}
{{- if include "sluice.directoryEnabled" $root }}
- name: directory
  configMap:
    name: {{ include "sluice.directoryConfigMapName" $root }}
{{- end }}
{{- if $root.Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ $root.Values.kafka.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "sluice.volumeMounts" -}}
- name: config
  mountPath: /etc/sluice/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "sluice.directoryEnabled" . }}
- name: directory
  mountPath: /etc/sluice/directory
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/sluice/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Liveness and readiness: /healthz (the process runs), /readyz (its dependencies answer). */}}
{{- define "sluice.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* Restarts pods when the configuration changes. */}}
{{- define "sluice.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end -}}
