# The conftest policy of the peer benchmark (bench/peers.sh, tests/tests/peers.rs): what a team
# writes for Pods in CI, run by `conftest test` and by `sealgate lint -p` on the same stream.
package main

import rego.v1

deny contains msg if {
	input.kind == "Pod"
	some c in input.spec.containers
	c.securityContext.privileged
	msg := sprintf("container %q is privileged", [c.name])
}

deny contains msg if {
	input.kind == "Pod"
	some c in input.spec.containers
	not c.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("container %q must set securityContext.allowPrivilegeEscalation: false", [c.name])
}

deny contains msg if {
	input.kind == "Pod"
	some c in input.spec.containers
	not c.resources.limits.memory
	msg := sprintf("container %q has no memory limit", [c.name])
}

warn contains msg if {
	input.kind == "Pod"
	not input.spec.securityContext.runAsNonRoot
	msg := sprintf("Pod %s does not set securityContext.runAsNonRoot", [input.metadata.name])
}
