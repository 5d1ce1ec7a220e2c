//! Where `collector serve` accepts sensors: a TCP address, or (local mode) a Unix domain
//! socket only root can reach. Either way every accepted connection holds one permit of a
//! bounded pool, so an attacker's idle connections cannot grow the collector without bound;
//! a connection over the limit is closed at once and counted.
//!
//! Local mode: the socket lives in a directory owned by the collector's user (root in the
//! package) with mode 0700 (an existing directory owned by anyone else, or open to group or
//! others, is refused), the socket itself is mode 0600, and a connecting peer must be uid 0
//! (or the collector's own uid) by SO_PEERCRED, checked before a byte is read.
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("socket directory {dir}: {reason}")]
    UnsafeDir { dir: String, reason: String },
}

/// A listen address: `unix:/path/to.sock` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl ListenAddr {
    pub fn parse(s: &str) -> ListenAddr {
        match s.strip_prefix("unix:") {
            Some(p) => ListenAddr::Unix(PathBuf::from(p)),
            None => ListenAddr::Tcp(s.to_string()),
        }
    }
}

/// A connection and its permit; reads and writes go to the connection.
pub struct Limited<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    /// Bytes read at accept (the HTTP/2 preface), replayed before the socket's own.
    head: Vec<u8>,
    head_at: usize,
}

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the HTTP/2 connection preface of a plaintext connection within `limit`. A peer that
/// sends nothing, too little or something else is refused: without this, hyper would wait
/// for the preface forever and each idle socket would hold a connection permit.
async fn read_preface<IO: AsyncRead + Unpin>(io: &mut IO, limit: Duration) -> io::Result<()> {
    let mut got = [0u8; 24];
    match tokio::time::timeout(limit, io.read_exact(&mut got)).await {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no HTTP/2 preface in time",
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) if &got == H2_PREFACE => Ok(()),
        Ok(Ok(_)) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        )),
    }
}

impl<IO> Limited<IO> {
    fn new(io: IO, permit: OwnedSemaphorePermit, head: Vec<u8>) -> Self {
        Self {
            io,
            _permit: permit,
            head,
            head_at: 0,
        }
    }
}

impl<IO: Connected> Connected for Limited<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.head_at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.head_at);
            let at = self.head_at;
            buf.put_slice(&self.head[at..at + n]);
            self.head_at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The uid a local-mode peer must have: root, or the collector's own uid (a collector run
/// by an unprivileged user for a test serves only that user).
pub fn peer_uid_allowed(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Creates (or checks) the socket's directory: owned by us, no access for group or others.
pub fn prepare_socket_dir(dir: &Path) -> Result<(), ListenError> {
    let unsafe_dir = |reason: String| ListenError::UnsafeDir {
        dir: dir.display().to_string(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unsafe_dir(format!("cannot create it: {e}"))),
    }
    let md = std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(e.to_string()))?;
    if !md.is_dir() {
        return Err(unsafe_dir("not a directory (a symlink?)".into()));
    }
    // SAFETY: as above.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by the collector's uid {me}",
            md.uid()
        )));
    }
    if md.mode() & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "mode {:o} lets group or others in; expected 0700",
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The socket systemd passed (socket activation, `LISTEN_FDS`), when it is the Unix socket
/// at `path`: systemd made it (owned by root, `SocketMode=0600`, `DirectoryMode=0700`), so
/// the collector, running as an unprivileged dynamic user, neither creates nor owns it.
fn inherited_unix(path: &Path) -> Option<UnixListener> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() }.to_string();
    if std::env::var("LISTEN_PID").ok()? != me {
        return None;
    }
    let n: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    for fd in 3..3 + n {
        use std::os::fd::FromRawFd;
        // SAFETY: systemd hands fds 3.. to this process (LISTEN_PID is ours); each is taken
        // at most once, and one that is not the wanted socket is given back with into_raw_fd.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        let ours = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p == path))
            .unwrap_or(false);
        if ours && l.set_nonblocking(true).is_ok() {
            std::env::remove_var("LISTEN_FDS");
            return UnixListener::from_std(l).ok();
        }
        use std::os::fd::IntoRawFd;
        let _ = l.into_raw_fd();
    }
    None
}

fn bind_unix(path: &Path) -> Result<UnixListener, ListenError> {
    if let Some(l) = inherited_unix(path) {
        tracing::info!(socket = %path.display(), "using the socket passed by systemd");
        return Ok(l);
    }
    let addr = format!("unix:{}", path.display());
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_socket_dir(dir)?;
    // A stale socket of an earlier run is replaced; anything else at the path is an error.
    if let Ok(md) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if md.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let l = UnixListener::bind(path).map_err(|source| ListenError::Bind {
        addr: addr.clone(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| ListenError::Bind { addr, source })?;
    Ok(l)
}

/// Raises the soft open-file limit towards `want` (up to the hard limit), so
/// `max_connections` can be reached; returns the soft limit in force.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want.min(r.rlim_max),
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                r.rlim_cur = new.rlim_cur;
            }
        }
    }
    r.rlim_cur
}

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, ListenError> {
        match addr {
            ListenAddr::Unix(p) => Ok(Listener::Unix(bind_unix(p)?, p.clone())),
            ListenAddr::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|source| ListenError::Bind {
                    addr: a.clone(),
                    source,
                }),
        }
    }

    /// What to log and report as the bound address.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }
}

type Conn<IO> = Result<Limited<IO>, io::Error>;

/// Accepts connections while a permit is free; returns the stream of admitted ones. With
/// `preface`, a connection is admitted only once its HTTP/2 preface has arrived within that
/// time (plaintext listeners; TLS has its own handshake timeout).
fn spawn_accept<IO, F, Fut>(
    accept: F,
    max_connections: usize,
    preface: Option<Duration>,
    metrics: Arc<Metrics>,
) -> mpsc::Receiver<Conn<IO>>
where
    IO: AsyncRead + Unpin + Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = io::Result<Option<IO>>> + Send,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let io = match accept().await {
                Ok(Some(io)) => io,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics.connections_refused.fetch_add(1, Relaxed);
                tracing::warn!(
                    max_connections,
                    "connection limit reached; closing a new connection"
                );
                continue;
            };
            let Some(limit) = preface else {
                if tx
                    .send(Ok(Limited::new(io, permit, Vec::new())))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            };
            // The preface is awaited beside the accept loop: a slow peer delays only itself.
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut io = io;
                match read_preface(&mut io, limit).await {
                    Ok(()) => {
                        let conn = Limited::new(io, permit, H2_PREFACE.to_vec());
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(e) => {
                        metrics.connections_no_preface.fetch_add(1, Relaxed);
                        tracing::debug!(error = %e, "closed a plaintext connection");
                    }
                }
            });
        }
    });
    rx
}

/// The admitted connections of a TCP listener.
pub fn tcp_incoming(
    l: TcpListener,
    max_connections: usize,
    preface: Option<Duration>,
    metrics: Arc<Metrics>,
) -> mpsc::Receiver<Conn<tokio::net::TcpStream>> {
    let l = Arc::new(l);
    spawn_accept(
        move || {
            let l = l.clone();
            async move {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Some(s))
            }
        },
        max_connections,
        preface,
        metrics,
    )
}

/// The admitted connections of the local socket: only peers whose SO_PEERCRED uid is allowed.
pub fn unix_incoming(
    l: UnixListener,
    max_connections: usize,
    preface: Option<Duration>,
    metrics: Arc<Metrics>,
) -> mpsc::Receiver<Conn<tokio::net::UnixStream>> {
    let l = Arc::new(l);
    let m = metrics.clone();
    spawn_accept(
        move || {
            let l = l.clone();
            let m = m.clone();
            async move {
                let (s, _) = l.accept().await?;
                match s.peer_cred() {
                    Ok(c) if peer_uid_allowed(c.uid()) => Ok(Some(s)),
                    Ok(c) => {
                        m.connections_refused.fetch_add(1, Relaxed);
                        tracing::warn!(
                            uid = c.uid(),
                            pid = ?c.pid(),
                            "refused a local connection: peer is not root"
                        );
                        Ok(None)
                    }
                    Err(e) => {
                        m.connections_refused.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, "refused a local connection: no peer credentials");
                        Ok(None)
                    }
                }
            }
        },
        max_connections,
        preface,
        metrics,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            ListenAddr::parse("unix:/run/x/c.sock"),
            ListenAddr::Unix("/run/x/c.sock".into())
        );
        assert_eq!(
            ListenAddr::parse("0.0.0.0:4317"),
            ListenAddr::Tcp("0.0.0.0:4317".into())
        );
    }

    #[test]
    fn socket_dir_must_be_private() {
        let base = std::env::temp_dir().join(format!("listen-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let d = base.join("sock");
        prepare_socket_dir(&d).unwrap();
        let md = std::fs::metadata(&d).unwrap();
        assert_eq!(md.mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_socket_dir(&d).unwrap_err().to_string();
        assert!(e.contains("lets group or others in"), "{e}");
        let link = base.join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let e = prepare_socket_dir(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
