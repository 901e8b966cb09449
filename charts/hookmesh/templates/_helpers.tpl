{{/* Chart name, overridable with nameOverride. */}}
{{- define "hookmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name prefix. Truncated to 40 characters so that the longest suffix
("-dataplane-peers", plus the StatefulSet pod ordinal and controller-revision hash)
still fits Kubernetes name limits.
*/}}
{{- define "hookmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart label value */}}
{{- define "hookmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "hookmesh.labels" -}}
helm.sh/chart: {{ include "hookmesh.chart" . }}
app.kubernetes.io/name: {{ include "hookmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hookmesh
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "hookmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookmesh.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of a component's objects; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "hookmesh.componentLabels" -}}
{{ include "hookmesh.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hookmesh.operator.fullname" -}}
{{- printf "%s-operator" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{- define "hookmesh.dataplane.fullname" -}}
{{- printf "%s-dataplane" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{/* Headless Service that gives data-plane pods stable DNS names and lets them find each other. */}}
{{- define "hookmesh.peers.serviceName" -}}
{{- printf "%s-dataplane-peers" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{/*
Fully qualified DNS name of the headless peers Service. The data plane resolves it every
settings.peerRefresh (--peers-dns) and probes each address to find its peers.
*/}}
{{- define "hookmesh.peers.dns" -}}
{{- printf "%s.%s.svc.%s" (include "hookmesh.peers.serviceName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Secret (key "token") with the shared secret data-plane peers present on internal calls. */}}
{{- define "hookmesh.peers.tokenSecretName" -}}
{{- default (printf "%s-peer-token" (include "hookmesh.fullname" .)) .Values.dataplane.peers.existingSecret -}}
{{- end -}}

{{/*
"true" when the data-plane PodDisruptionBudget is rendered, else empty:
podDisruptionBudget.enabled true, or "auto" (the default) with replicas > 1.
*/}}
{{- define "hookmesh.dataplane.pdbEnabled" -}}
{{- $enabled := toString .Values.dataplane.podDisruptionBudget.enabled -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (gt (int .Values.dataplane.replicas) 1)) -}}
true
{{- end -}}
{{- end -}}

{{/*
Affinity of data-plane pods: dataplane.affinity, plus a podAntiAffinity over the data-plane
pods per node when dataplane.podAntiAffinity is "soft" (preferred, weight 100) or "hard"
(required) and dataplane.affinity does not set podAntiAffinity itself (then the user's wins).
Renders nothing when the result is empty.
*/}}
{{- define "hookmesh.dataplane.affinity" -}}
{{- $affinity := deepCopy (default (dict) .Values.dataplane.affinity) -}}
{{- $mode := .Values.dataplane.podAntiAffinity -}}
{{- if and $mode (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "hookmesh.selectorLabels" (dict "ctx" . "component" "dataplane") | fromYaml)) -}}
{{- if eq $mode "hard" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- with $affinity -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{- define "hookmesh.configSecretName" -}}
{{- default (printf "%s-config" (include "hookmesh.fullname" .)) .Values.configSecretName -}}
{{- end -}}

{{- define "hookmesh.operator.leaseName" -}}
{{- default (include "hookmesh.operator.fullname" .) .Values.operator.leaderElection.leaseName -}}
{{- end -}}

{{- define "hookmesh.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "hookmesh.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hookmesh.dataplane.serviceAccountName" -}}
{{- if .Values.dataplane.serviceAccount.create -}}
{{- default (include "hookmesh.dataplane.fullname" .) .Values.dataplane.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.dataplane.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" $ "image" .Values.operator.image). */}}
{{- define "hookmesh.image" -}}
{{- $repo := .image.repository -}}
{{- with .ctx.Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* MutatingWebhookConfiguration of the sidecar injector (--webhook-config). */}}
{{- define "hookmesh.sidecarInjector.configName" -}}
{{- printf "%s-sidecar-injector" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{/* Service in front of the operator's webhook listener (not rendered when sidecarInjector.url is set). */}}
{{- define "hookmesh.sidecarInjector.serviceName" -}}
{{- printf "%s-webhook" (include "hookmesh.operator.fullname" .) -}}
{{- end -}}

{{/* Secret with the webhook CA and serving certificate (--webhook-secret), made by the operator. */}}
{{- define "hookmesh.sidecarInjector.tlsSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "hookmesh.fullname" .)) .Values.sidecarInjector.tlsSecretName -}}
{{- end -}}

{{/* ClusterRole the operator binds in each namespace with injected Pods (--sidecar-events-role). */}}
{{- define "hookmesh.sidecarInjector.eventsRoleName" -}}
{{- printf "%s-sidecar" (include "hookmesh.fullname" .) -}}
{{- end -}}

{{/*
Names of the webhook's serving certificate (--webhook-hosts), comma-separated: the webhook
Service's DNS names (<svc>.<ns>.svc, <svc>.<ns>.svc.<clusterDomain>), or the host of
sidecarInjector.url when that is set (the API server then calls the URL, not the Service),
then sidecarInjector.extraHosts; duplicates dropped.
*/}}
{{- define "hookmesh.sidecarInjector.hosts" -}}
{{- $si := .Values.sidecarInjector -}}
{{- $hosts := list -}}
{{- if $si.url -}}
{{- $host := (urlParse $si.url).hostname -}}
{{- if not $host -}}
{{- fail (printf "sidecarInjector.url %q has no host" $si.url) -}}
{{- end -}}
{{- $hosts = append $hosts $host -}}
{{- else -}}
{{- $svc := printf "%s.%s.svc" (include "hookmesh.sidecarInjector.serviceName" .) .Release.Namespace -}}
{{- $hosts = append $hosts $svc -}}
{{- $hosts = append $hosts (printf "%s.%s" $svc .Values.clusterDomain) -}}
{{- end -}}
{{- range $si.extraHosts -}}
{{- $hosts = append $hosts . -}}
{{- end -}}
{{- $hosts | uniq | join "," -}}
{{- end -}}

{{/*
Image of the injected sidecar (--sidecar-image): sidecarInjector.sidecarImage, field by field
falling back to dataplane.image (repository; tag and digest together, so that a sidecar tag is
never overridden by a data-plane digest). With nothing set it is the data-plane image.
*/}}
{{- define "hookmesh.sidecarInjector.image" -}}
{{- $sc := .Values.sidecarInjector.sidecarImage -}}
{{- $dp := .Values.dataplane.image -}}
{{- $img := dict "repository" (default $dp.repository $sc.repository) "tag" $dp.tag "digest" $dp.digest -}}
{{- if or $sc.tag $sc.digest -}}
{{- $_ := set $img "tag" $sc.tag -}}
{{- $_ := set $img "digest" $sc.digest -}}
{{- end -}}
{{- include "hookmesh.image" (dict "ctx" . "image" $img) -}}
{{- end -}}

{{/* Pod-level security context shared by both workloads (distroless "nonroot" is uid 65532). */}}
{{- define "hookmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context shared by both containers. */}}
{{- define "hookmesh.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Topology spread constraints with the component's selector filled in where omitted.
Call with (dict "ctx" $ "component" "dataplane" "constraints" .Values.dataplane.topologySpreadConstraints).
*/}}
{{- define "hookmesh.topologySpread" -}}
{{- $ctx := .ctx -}}
{{- $component := .component -}}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "hookmesh.selectorLabels" (dict "ctx" $ctx "component" $component) | fromYaml)) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* Fail early on combinations that cannot work. */}}
{{- define "hookmesh.validateValues" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection.enabled) -}}
{{- fail "operator.replicas > 1 requires operator.leaderElection.enabled=true: two operators without a Lease would fight over the config Secret and status" -}}
{{- end -}}
{{- if and .Values.sidecarInjector.enabled (eq (int .Values.sidecarInjector.port) (int .Values.operator.metricsPort)) -}}
{{- fail (printf "sidecarInjector.port and operator.metricsPort are both %d: the webhook listener needs a port of its own" (int .Values.operator.metricsPort)) -}}
{{- end -}}
{{- end -}}
