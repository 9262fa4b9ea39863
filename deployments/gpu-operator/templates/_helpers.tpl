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

{{/* key=value,… from a map, sorted, for --gpu-node-selector. */}}
{{- define "gpu-operator.selectorFlag" -}}
{{- $pairs := list -}}
{{- range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%s" $k (toString $v)) }}{{ end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* The ServiceMonitor is on when operator.metrics.serviceMonitor is given (as in NVIDIA's chart) and not enabled: false. */}}
{{- define "gpu-operator.serviceMonitorEnabled" -}}
{{- $sm := ((.Values.operator.metrics | default dict).serviceMonitor | default dict) -}}
{{- if and $sm (ne (toString $sm.enabled) "false") }}true{{ end -}}
{{- end -}}

{{/*
Values NVIDIA's chart has and gpuop does not act on, as given (true, non-empty; a component
only while enabled), for the install notes. A JSON list of value paths.
*/}}
{{- define "gpu-operator.ignoredSettings" -}}
{{- $out := list -}}
{{- $acted := list "operator" "driver" "gds" "gdrcopy" "vgpuManager" "nfd" "toolkit" "devicePlugin" "gfd" "dcgmExporter" "validator" "daemonsets" "mig" -}}
{{- range $k, $v := .Values -}}
{{- if and (not (has $k $acted)) $v -}}
{{- if or (not (kindIs "map" $v)) (not (hasKey $v "enabled")) $v.enabled -}}
{{- $out = append $out $k -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k := list "env" "use_ocp_driver_toolkit" "cleanupCRD" "upgradeCRD" "annotations" "logging" -}}
{{- if get $.Values.operator $k }}{{ $out = append $out (printf "operator.%s" $k) }}{{ end -}}
{{- end -}}
{{- $d := .Values.driver -}}
{{- if ($d.nvidiaDriverCRD | default dict).enabled }}{{ $out = append $out "driver.nvidiaDriverCRD.enabled" }}{{ end -}}
{{- range $k := list "useNvidiaDriverCRD" "useOpenKernelModules" -}}
{{- if get $d $k }}{{ $out = append $out (printf "driver.%s" $k) }}{{ end -}}
{{- end -}}
{{- range $k, $field := dict "repoConfig" "configMapName" "certConfig" "name" "virtualTopology" "config" -}}
{{- if get (get $d $k | default dict) $field }}{{ $out = append $out (printf "driver.%s.%s" $k $field) }}{{ end -}}
{{- end -}}
{{- with $d.licensingConfig }}{{ if or .secretName .configMapName }}{{ $out = append $out "driver.licensingConfig" }}{{ end }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
A values map without what is unset: empty strings, nulls, and maps or lists
left empty, recursively (so the operator's defaults apply to them), as JSON.
*/}}
{{- define "gpu-operator.pruned" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- if kindIs "map" $v -}}
{{- $sub := include "gpu-operator.pruned" $v | fromJson -}}
{{- if $sub }}{{ $_ := set $out $k $sub }}{{ end -}}
{{- else if kindIs "slice" $v -}}
{{- if $v }}{{ $_ := set $out $k $v }}{{ end -}}
{{- else if kindIs "string" $v -}}
{{- if ne $v "" }}{{ $_ := set $out $k $v }}{{ end -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
One operand's part of the ClusterPolicy from its values, as NVIDIA's chart
writes it: version as a string, pull secrets and env normalized as the
driver's, and config reduced to the ConfigMap's name and default (create and
data make the chart create it, see operand-configs.yaml).
*/}}
{{- define "gpu-operator.operandSpec" -}}
{{- $o := include "gpu-operator.pruned" (omit . "config") | fromJson -}}
{{- with .version }}{{ $_ := set $o "version" (toString .) }}{{ end -}}
{{- if hasKey $o "imagePullSecrets" }}{{ $_ := set $o "imagePullSecrets" (include "gpu-operator.secretNames" $o.imagePullSecrets | fromJsonArray) }}{{ end -}}
{{- if hasKey $o "env" }}{{ $_ := set $o "env" (include "gpu-operator.env" $o.env | fromJsonArray) }}{{ end -}}
{{- with .config -}}
{{- $c := dict -}}
{{- with .name }}{{ $_ := set $c "name" . }}{{ end -}}
{{- with .default }}{{ $_ := set $c "default" . }}{{ end -}}
{{- if $c }}{{ $_ := set $o "config" $c }}{{ end -}}
{{- end -}}
{{- toJson $o -}}
{{- end -}}

{{/*
The operator's V8 options for a memory limit (a Kubernetes quantity): the old generation may
take the limit less 128 MiB (the node binary, the young generation and buffers live outside it),
and at least half the limit. V8 collects sooner the nearer its heap is to this cap, so the heap
stays near what is live instead of growing up to four times that between collections
(docs/scale.md), and a heap that outgrows it fails as an out-of-memory error in the log rather
than a kill by the kernel.
*/}}
{{- define "gpu-operator.nodeOptions" -}}
{{- $q := toString . -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- if eq $num "" -}}
{{- fail (printf "operator.resources.limits.memory %q is not a quantity: give one like 512Mi or 1Gi" $q) -}}
{{- end -}}
{{- $unit := trimPrefix $num $q -}}
{{- $factors := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- if not (hasKey $factors $unit) -}}
{{- fail (printf "operator.resources.limits.memory %q has a unit gpuop does not read: use Mi or Gi (or k, M, G, Ki)" $q) -}}
{{- end -}}
{{- $mib := divf (mulf (float64 $num) (get $factors $unit)) 1048576.0 -}}
{{- $heap := max (int (floor (subf $mib 128.0))) (int (floor (divf $mib 2.0))) -}}
{{- printf "--max-semi-space-size=8 --max-old-space-size=%d" $heap -}}
{{- end -}}
