{{/* Name of the operator's objects: the release name when it already says gpu-operator. */}}
{{- define "gpu-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gpu-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gpu-operator.labels" -}}
{{ include "gpu-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator image: repository/image:version, or @digest when version is a sha256 digest. */}}
{{- define "gpu-operator.image" -}}
{{- $version := toString (.Values.operator.version | default .Chart.AppVersion) -}}
{{- $name := .Values.operator.image -}}
{{- with .Values.operator.repository }}{{ $name = printf "%s/%s" (trimSuffix "/" .) $name }}{{ end -}}
{{- if hasPrefix "sha256:" $version -}}
{{- printf "%s@%s" $name $version -}}
{{- else -}}
{{- printf "%s:%s" $name $version -}}
{{- end -}}
{{- end -}}

{{/* A list of secret names from a list, or from one name as NVIDIA's docs write it (--set driver.imagePullSecrets=<secret>). */}}
{{- define "gpu-operator.secretNames" -}}
{{- $names := list -}}
{{- if kindIs "string" . -}}
{{- if ne . "" }}{{ $names = list . }}{{ end -}}
{{- else if . -}}
{{- $names = . -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The ServiceAccount the driver pods run as (the operator renders serviceAccountName: nvidia-driver). */}}
{{- define "gpu-operator.driverServiceAccount" -}}nvidia-driver{{- end -}}

{{/* Env vars as the CRD wants them: values are strings (--set driver.env[0].value=1 gives a number). */}}
{{- define "gpu-operator.env" -}}
{{- $out := list -}}
{{- range . -}}
{{- $e := dict "name" .name -}}
{{- if hasKey . "value" }}{{ $_ := set $e "value" (toString .value) }}{{ end -}}
{{- $out = append $out $e -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
