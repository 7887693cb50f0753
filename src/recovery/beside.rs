//! The work a recovery does beside its servers' load (validation and the copy; not the
//! files' content digest, which the proof then waits for) runs on threads of its own at a
//! lower priority. A load is one server
//! thread and the recovery's critical path; on a machine with fewer free cores than
//! busy threads, the scheduler would otherwise share a core between the load and
//! Lazarus's own reading, and the load would take a third longer (measured: 2.8 s alone,
//! 4.1-4.3 s beside an AOF's validation and copy on 2 cores). Lowered, the work still
//! gets any core the load leaves idle.

use tokio::sync::oneshot;

/// How much lower than the shell's own priority the work runs (`nice`).
const NICE: libc::c_int = 10;

/// Work running on its own lowered thread; [`Beside::join`] waits for its result.
pub struct Beside<T>(oneshot::Receiver<T>);

/// Runs `f` on a new thread at a lower priority.
pub fn beside<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Beside<T> {
    let (tx, rx) = oneshot::channel();
    let _ = std::thread::Builder::new()
        .name("lazarus-beside".into())
        .spawn(move || {
            // On Linux a nice value is per thread: this one only. Failing leaves the
            // priority as it was.
            // SAFETY: `nice` only changes the calling thread's scheduling priority.
            unsafe {
                libc::nice(NICE);
            }
            let _ = tx.send(f());
        });
    Beside(rx)
}

impl<T> Beside<T> {
    /// The result; an error when the work could not start or panicked.
    pub async fn join(self) -> Result<T, String> {
        self.0
            .await
            .map_err(|_| "a recovery thread stopped before it finished".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_lowered_and_hands_back_its_result() {
        let nice = beside(|| {
            // SAFETY: reads the calling thread's own priority.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        });
        // SAFETY: as above, for this thread.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice.join().await.unwrap(), (own + NICE).min(19));
        let panicked = beside(|| -> u8 { panic!("on purpose") });
        assert!(panicked.join().await.is_err());
    }
}
