//! Two processes changing the CCS at once: each change either lands whole or is refused
//! naming the lock holder; the document, and every reader's view of it, is never corrupt.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::Lazarus;
use lazarus::ccs::Store;

#[test]
fn concurrent_writers_never_corrupt_the_ccs() {
    let lz = Arc::new(Lazarus::new());
    lz.run("cluster create name c").ok();
    let done = Arc::new(AtomicBool::new(false));

    // A reader that loads the document as fast as it can while the writers run.
    let reader = {
        let (home, done) = (lz.home().to_path_buf(), done.clone());
        std::thread::spawn(move || {
            let store = Store::new(home);
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let cluster = store.load().expect("a reader always sees a whole document");
                assert!(cluster.is_some());
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let lz = lz.clone();
            std::thread::spawn(move || {
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
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

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
