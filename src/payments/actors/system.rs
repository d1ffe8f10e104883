//! An actix `System` with its arbiters, on a thread beside tokio.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use actix::{Arbiter, System};
use actix_rt::ArbiterHandle;

pub struct ActorSystem {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    system: System,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ActorSystem {
    /// Starts the system thread with `arbiters` event loops.
    pub fn start(arbiters: usize) -> std::io::Result<ActorSystem> {
        let (ready, handles) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("payorch-actors".into())
            .spawn(move || {
                let system = System::new();
                let arbiters: Vec<Arbiter> = system
                    .block_on(async { (0..arbiters.max(1)).map(|_| Arbiter::new()).collect() });
                let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
                let _ = ready.send((System::current(), handles));
                // Runs until `System::stop`; then the arbiters stop with it.
                let _ = system.run();
                for arbiter in arbiters {
                    arbiter.stop();
                    let _ = arbiter.join();
                }
            })?;
        let (system, arbiters) = handles
            .recv()
            .map_err(|_| std::io::Error::other("the actor system thread died while starting"))?;
        Ok(ActorSystem {
            arbiters,
            next: AtomicUsize::new(0),
            system,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The arbiter for the next actor: round robin.
    pub fn arbiter(&self) -> &ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        &self.arbiters[i]
    }

    /// Stops every actor and the system thread.
    pub fn stop(&self) {
        self.system.stop();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ActorSystem {
    fn drop(&mut self) {
        self.system.stop();
    }
}
