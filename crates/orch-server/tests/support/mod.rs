//! What the daemon's integration tests share.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// The address the daemon started on `home` (listening on port 0) wrote to `serve.addr`, once
/// it is there; fails if the daemon stops first or nothing appears within 20 s.
pub async fn serve_addr<T>(home: &Path, handle: &JoinHandle<T>) -> SocketAddr {
    let addr_file = home.join("serve.addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&addr_file).unwrap_or_default();
        if let Ok(addr) = text.trim().parse() {
            return addr;
        }
        assert!(!handle.is_finished(), "serve stopped before it listened");
        assert!(Instant::now() < deadline, "serve.addr never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
