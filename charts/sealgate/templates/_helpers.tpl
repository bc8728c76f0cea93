{{/*
Names are fixed, as deploy/ has them: the webhook, the CLI (`sealgate cert --controller kube://`)
and the docs find the objects by these names, and the CRDs and the webhook configuration are
cluster-wide anyway, so a cluster holds one sealgate release.
*/}}

{{/* Labels on every object's metadata. */}}
{{- define "sealgate.labels" -}}
app.kubernetes.io/part-of: sealgate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (the appVersion when empty). */}}
{{- define "sealgate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* Pod and container security, the same for both components ("restricted"). */}}
{{- define "sealgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "sealgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Scheduling and pod extras of one component: (dict "c" .Values.controller "root" .) */}}
{{- define "sealgate.scheduling" -}}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* How the API server reaches the webhook. */}}
{{- define "sealgate.clientConfig" -}}
clientConfig:
  service:
    name: sealgate-webhook
    namespace: {{ .Release.Namespace }}
    path: /validate
    port: 443
{{- end }}
