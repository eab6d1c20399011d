// Package k8s holds terminator's Kubernetes manifests (the *.yaml files
// beside this one) and the test that checks them, since no cluster runs
// where the tests do: every document decodes strictly into the Kubernetes API
// types (an unknown or misspelled field fails), and the containers agree with
// the binary they run: each flag and environment variable is one
// `terminator <role> -h` documents, the probes ask the admin listener's port
// for /healthz and /readyz, secrets come from the Secret, and the grace
// period covers preStop and the drain.
//
// It is a module of its own so that the Kubernetes API packages never enter
// the product's dependency graph. nginx-config.yaml is generated from
// deploy/nginx by `go test -update` here; the test fails when it is stale.
package k8s
