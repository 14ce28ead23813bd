{{- define "common.labels" -}}
app.kubernetes.io/name: {{ include "common.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}
