// The CustomResourceDefinitions of the projects the cluster tier meets, read from their own
// modules (nothing is built): the wg-policy PolicyReport CRDs (Kyverno), Flux's GitRepository
// and Kustomization, and Argo CD's Application. `go mod download` fetches each zip and checks it
// against go.sum; testenv/src/crds.rs reads the files.
module sealgate.dev/testenv/crds

go 1.26.0

require (
	github.com/argoproj/argo-cd/v3 v3.5.8
	github.com/fluxcd/kustomize-controller v1.9.6
	github.com/fluxcd/source-controller v1.9.6
	github.com/kyverno/kyverno v1.19.1
	github.com/openreports/reports-api v0.2.1
)
