//! Two processes changing the CCS at once: each change either lands whole or is refused
//! naming the lock holder; the document, and every reader's view of it, is never corrupt.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::Lazarus;
use lazarus::ccs::Store;

#[test]
fn concurrent_writers_never_corrupt_the_ccs() {
    let lz = Lazarus::new();
    lz.run("cluster create name c").ok();
    let done = AtomicBool::new(false);

    // However the writers end, the reader is told to stop and is joined before the home
    // (a temporary directory) goes: else a failing writer would leave it reading a home
    // being deleted, and report that as a missing document.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (reads, added) = std::thread::scope(|scope| {
        // A reader that loads the document as fast as it can while the writers run.
        let reader = scope.spawn(|| {
            let store = Store::new(lz.home().to_path_buf());
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let cluster = store.load().expect("a reader always sees a whole document");
                assert!(cluster.is_some(), "a reader always sees the document");
                reads += 1;
            }
            reads
        });
        let stop = Stop(&done);
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let lz = &lz;
                scope.spawn(move || {
                    let mut added = 0;
                    for i in 0..8 {
                        let path = lz.path(&format!("w{w}-{i}"));
                        let out = lz.run(&format!(
                            "node add addr 127.0.0.{} persistent_path {}",
                            w + 1,
                            path.display()
                        ));
                        match out.code {
                            0 => added += 1,
                            1 => assert!(
                                out.stderr
                                    .contains("the cluster configuration is being changed by pid"),
                                "{}",
                                out.stderr
                            ),
                            code => panic!("exit {code}: {}", out.stderr),
                        }
                    }
                    added
                })
            })
            .collect();
        let added: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        drop(stop);
        (reader.join().unwrap(), added)
    });
    assert!(reads > 0);

    assert!(added > 0, "no write succeeded");
    let cluster = Store::new(lz.home().to_path_buf()).load().unwrap().unwrap();
    assert_eq!(cluster.nodes.len() as u64, 1 + added);
    assert_eq!(cluster.generation, 1 + added);
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    assert_eq!(
        ids,
        (1..=1 + added).collect::<Vec<_>>(),
        "ids are handed out once each"
    );
    for node in cluster.nodes.values() {
        let backup = Store::new(node.persistent_path.join("ccs"))
            .load()
            .unwrap()
            .unwrap();
        assert!(backup.generation <= cluster.generation);
    }
}
