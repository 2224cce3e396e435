// Package gossip is newbieha's membership and state-spreading layer: an
// encrypted hashicorp/memberlist cluster in which every node publishes one
// opaque state blob (in the product: its check results and GPU telemetry as
// JSON) and sees every other node's latest blob and liveness.
//
// It imports nothing else from newbieha: cluster gives it a name, an
// address, the 32-byte gossip key and a logger, calls SetLocalState when
// the local health report changes, and reads Members when OnChange fires.
//
// How a state travels:
//   - Each node numbers its states (a per-origin sequence that starts at the
//     boot time in nanoseconds and only grows); every receiver keeps the
//     highest sequence per origin, so reordering, duplicates and stale
//     push/pull data never roll a state back.
//   - A state whose encoded form fits a gossip packet (≤ 1200 bytes after
//     DEFLATE; 4 KB of telemetry JSON compresses to about 900) goes through
//     memberlist's broadcast queue and is relayed once by each receiver.
//   - A larger state (up to MaxStateSize) is sent to every live peer over
//     TCP (memberlist's SendReliable).
//   - A peer that comes alive gets a full push/pull at once, and push/pull
//     with a random peer every PushPullInterval repairs anything lost.
//   - Failed peers are joined again every ReconnectInterval, so a healed
//     partition or a restarted node converges.
//
// Every state is signed (sign.go): the origin signs it with its node key
// and the envelope names the certificate of that key (in full, or by hash
// in a broadcast that the full form would not fit). A receiver takes a
// state only when Config.VerifyOrigin accepts the certificate for the
// origin the state names (in the product: issued by the cluster CA, CN
// equal to the origin, a current member) and the signature holds, so a
// holder of the gossip key cannot speak for another node. Unsigned,
// forged and replayed states are dropped (and logged), and a sequence
// more than an hour past the receiver's clock is refused, so none can pin
// an origin's state at 2^64-1 or wrap a node's own sequence.
//
// Encryption is mandatory: every packet and stream is AES-256-GCM with the
// cluster key, and a node with another key (or none) cannot join; the
// refusing node logs it at ERROR and Join's error matches ErrKeyMismatch.
// memberlist callbacks never block: they decode, take a mutex briefly and
// signal goroutines owned by the Gossip, which Close stops and waits for.
//
// See docs/gossip.md for sizes and measured timings.
package gossip
