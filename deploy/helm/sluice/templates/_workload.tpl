{{/*
A Deployment of one sluice role and the Service in front of it.
Arguments (a dict): root, component, values (the role's values), replicas,
args, strategy, serviceAccount, automountToken, extraEnv (a YAML list string),
extraVolumes and extraVolumeMounts (YAML list strings), tmpSizeLimit (of
/tmp, default 1Gi), service (a dict: type, port, annotations, publishNotReady).
*/}}
{{- define "sluice.deployment" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $ctx := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "sluice.component" $ctx }}
  labels:
    {{- include "sluice.labels" $ctx | nindent 4 }}
spec:
  replicas: {{ .replicas }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sluice.labels" $ctx | nindent 8 }}
      annotations:
        {{- include "sluice.configChecksum" $root | nindent 8 }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: {{ .automountToken }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ default 30 $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "sluice.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "sluice.env" $root | nindent 12 }}
            {{- with .extraEnv }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $root.Values.port }}
              protocol: TCP
          {{- include "sluice.probes" $root | nindent 10 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- include "sluice.volumeMounts" $root | nindent 12 }}
            {{- with .extraVolumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "sluice.volumes" (dict "root" $root "tmpSizeLimit" .tmpSizeLimit) | nindent 8 }}
        {{- with .extraVolumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sluice.component" $ctx }}
  labels:
    {{- include "sluice.labels" $ctx | nindent 4 }}
  {{- with .service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .service.type }}
  {{- if .service.publishNotReady }}
  # Only /metrics is served to others: scrape pods that are not ready too.
  publishNotReadyAddresses: true
  {{- end }}
  selector:
    {{- include "sluice.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ .service.port }}
      targetPort: http
      protocol: TCP
{{- end -}}
