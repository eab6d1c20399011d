// Package policy is what a rollout decides, as every caller applies it:
// a service's Policy (the share of calls each version gets, a Ghost
// version that gets copies, a sticky A/B Experiment), the edge's feature
// Flags, and the hashing (Slot) that keeps a client on one side of a
// split. The edge writes what it decided into a request's labels; FlagOn
// and VariantOf read them back. nanobus picks instances by a Policy;
// discovery/rollout keeps policies and flags in etcd.
package policy
