//! Port ranges for the clusters tests build. Tests of one binary run side by side, so each
//! takes a block of its own: blocks are handed out in turn from a random start, never the
//! same one twice in a process (test binaries run one after another). Client ports stay in
//! 12000-19999, so a cluster shard's bus port (+10000) stays in 22000-29999: clear of
//! every block's client ports, of the binary's default range (10000-10999, bus ports
//! 20000-20999) and the block `node add` gives a second node (11000-11999, bus ports
//! 21000-21999), and of the ephemeral ports (32768 up) that a test's own client
//! connections take.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

/// Ports in a block: two nodes of [`NODE_PORTS`].
pub const BLOCK_PORTS: u16 = 60;
/// Ports in one node's range.
pub const NODE_PORTS: u16 = 30;
const FIRST_PORT: u16 = 12_000;
const BLOCKS: u16 = 133;

/// The first port of a block no other test of this process holds.
pub fn block() -> u16 {
    static START: OnceLock<u16> = OnceLock::new();
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = *START.get_or_init(|| rand::random::<u16>() % BLOCKS);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    FIRST_PORT + ((start + n) % BLOCKS) * BLOCK_PORTS
}
