//! Running the application on a socket, in the binary or inside tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{router, AppConfig, Shared};
use crate::store::Store;

/// Serves the application on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts the periodic version comparison of a replicating server (none
/// otherwise): every `repair_interval`, on the current runtime.
pub fn spawn_repair(shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    let interval = shared.replication.as_ref()?.config.repair_interval;
    let shared = Arc::clone(shared);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            shared.repair_round().await;
        }
    }))
}

/// A server instance running on the current tokio runtime.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    repair: Option<JoinHandle<()>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(repair) = self.repair.take() {
            repair.abort();
        }
    }
}

impl RunningServer {
    /// Binds `listen` (port 0 picks a free port) and starts serving with a new
    /// instance ID and an empty cache.
    pub async fn start(
        config: AppConfig,
        store: Arc<dyn Store>,
        listen: SocketAddr,
    ) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(listen).await?;
        RunningServer::serve_shared(listener, Shared::new(config, store))
    }

    /// Serves an already built server (e.g. [`Shared::replicating`]) on a bound
    /// listener, with its periodic repair when it replicates.
    pub fn serve_shared(
        listener: TcpListener,
        shared: Arc<Shared>,
    ) -> std::io::Result<RunningServer> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared), async move {
            let _ = stopped.await;
        }));
        let repair = spawn_repair(&shared);
        Ok(RunningServer {
            addr,
            shared,
            stop: Some(stop),
            task,
            repair,
        })
    }

    /// Stops accepting, waits for in-flight requests, and returns serve's result.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(repair) = self.repair.take() {
            repair.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
