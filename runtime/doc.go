// Package runtime runs the model service container on this host.
//
// It is a leaf: it imports no other newbieha package. Because its name
// shadows the standard library's, import it everywhere under the alias
// wruntime:
//
//	import wruntime "github.com/newbieha/newbieha/runtime"
//
// The parts:
//
//   - Spec describes the container (image, command, env, ports, bind mounts
//     and volumes, GPU device request, restart policy, shm size, ulimits,
//     labels...). Spec.Validate names the bad field; Spec.Hash is a stable
//     digest that tells an unchanged container from a stale one.
//   - Driver makes the host match a Spec and a Want (Running or Stopped)
//     and reports a State. Docker drives the Docker Engine API; NoneDriver
//     is for a service run by something else (systemd, an existing compose
//     stack), where newbieha only checks the service and moves the VIP.
//   - Reconciler loops a Driver toward the standby mode (Hot: run on every
//     GPU node; Cold: only on the active one) and this node's role, with
//     backoff while the runtime is unavailable.
//   - LoadCompose imports one service of a docker-compose file through the
//     compose-spec loader; every key it cannot honour is an error naming it.
//
// The Docker driver only touches containers labelled with its cluster and
// node (LabelManaged, LabelCluster, LabelNode); it adopts a running
// container whose LabelSpecHash matches, so an agent restart does not
// restart a model that takes minutes to load. A daemon that cannot be
// reached gives errors wrapping ErrUnavailable ("runtime unavailable: ...");
// the driver holds no state about the daemon, so it recovers by itself when
// the daemon returns. See docs/runtime.md.
package runtime
