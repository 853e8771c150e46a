//! The fuser adapter. This file only links fuser's callbacks to `fs.rs`:
//! each callback is a span, one call into [`Fs`], and a reply or an errno.
//! It also owns the two kernel-facing mechanisms that need fuser types:
//! passthrough backing ids (one per inode while any handle is open) and the
//! notifier that invalidates what a generation swap changed.

mod backing;

use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};

use crate::catalog::{Invalidations, Kind};
use crate::fs::{Attr, DirSink, Fs, FsError, OpenKind};
use backing::Backing;

pub struct FuseFs {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    passthrough: Arc<AtomicBool>,
    backing: Arc<Mutex<Backing<Passthrough>>>,
}

/// Backing ids kept after their last handle closes: reopening a hot file
/// then costs no backing open/close round trip with the kernel, nor an
/// `open(2)` of the cache object. Each holds a descriptor (and the file open
/// in the kernel), so the count is bounded: 4,096, or a quarter of the
/// process's descriptor limit when that is lower.
pub fn idle_ids(fd_limit: u64) -> usize {
    (fd_limit / 4).clamp(16, 4096) as usize
}

/// A backing id and the cache file it was opened on. Holding the file keeps
/// it in `Fs`'s table of open objects, so reopening the inode costs no
/// `open(2)` of the cache object either.
struct Passthrough {
    id: BackingId,
    _file: Arc<std::fs::File>,
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(a.mtime));
    let (kind, perm) = match a.kind {
        Kind::Dir => (FileType::Directory, 0o555),
        Kind::File => (FileType::RegularFile, 0o444),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm,
        nlink: a.nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 128 * 1024,
        flags: 0,
    }
}

struct Sink<'a>(&'a mut ReplyDirectory);

impl DirSink for Sink<'_> {
    fn add(&mut self, ino: u64, offset: u64, kind: Kind, name: &str) -> bool {
        let ft = if kind == Kind::Dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        self.0.add(INodeNo(ino), offset, ft, name)
    }
}

impl FuseFs {
    /// `max_idle`: how many passthrough backing ids to keep for reuse
    /// ([`idle_ids`]).
    pub fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle, max_idle: usize) -> FuseFs {
        let backing = Arc::new(Mutex::new(Backing::new(max_idle)));
        // The artifact store's evictions give their disk space back at once
        // (a download waiting for room retries soon), not at the next open.
        let (store, b) = (fs.store().clone(), backing.clone());
        rt.spawn(async move {
            let mut removals = store.watch_removals();
            while removals.changed().await.is_ok() {
                b.lock().unwrap().apply_removals(&store);
            }
        });
        FuseFs {
            fs,
            rt,
            passthrough: Arc::new(AtomicBool::new(false)),
            backing,
        }
    }

    /// Polls `fut` once on this thread; only if it must wait does it move to
    /// the runtime, so cached answers never pay for a task switch.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
        done: impl FnOnce(T) + Send + 'static,
    ) {
        let _rt = self.rt.enter();
        let mut fut = Box::pin(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => done(v),
            Poll::Pending => {
                self.rt.spawn(async move { done(fut.await) });
            }
        }
    }
}

/// Sends a generation swap's invalidations to the kernel, off the FUSE
/// threads (the kernel may hold a directory lock while waiting for them).
pub fn invalidator(
    notifier: fuser::Notifier,
    rt: tokio::runtime::Handle,
) -> impl Fn(Invalidations) -> tokio::task::JoinHandle<()> + Send + Sync + 'static {
    let notifier = Arc::new(notifier);
    move |inv: Invalidations| {
        let n = notifier.clone();
        rt.spawn_blocking(move || {
            for (parent, name) in &inv.entries {
                if let Err(e) = n.inval_entry(INodeNo(*parent), OsStr::new(name)) {
                    tracing::debug!(parent, name, "inval_entry: {e}");
                }
            }
            for ino in &inv.inodes {
                if let Err(e) = n.inval_inode(INodeNo(*ino), 0, 0) {
                    tracing::debug!(ino, "inval_inode: {e}");
                }
            }
        })
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_EXPLICIT_INVAL_DATA;
        let _ = config.add_capabilities(wanted & config.capabilities());
        let _ = config
            .set_max_readahead(u32::MAX)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        if config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(1).is_ok()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        tracing::info!(
            passthrough = self.passthrough.load(Ordering::Relaxed),
            "FUSE session initialized"
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let span = tracing::debug_span!("lookup", parent = parent.0, ?name);
        let _e = span.enter();
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        self.run(
            self.fs.clone().lookup(parent.0, name.to_string()),
            move |r| match r {
                Ok(a) => reply.entry(&a.ttl(), &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let span = tracing::debug_span!("getattr", ino = ino.0);
        let _e = span.enter();
        self.run(self.fs.clone().getattr(ino.0), move |r| match r {
            Ok(a) => reply.attr(&a.ttl(), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Listings only change with a swap, which invalidates them.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let span = tracing::debug_span!("readdir", ino = ino.0, offset);
        let _e = span.enter();
        match self.fs.readdir(ino.0, offset, &mut Sink(&mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let span = tracing::debug_span!("open", ino = ino.0);
        let _e = span.enter();
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
        let (passthrough, backing) = (self.passthrough.clone(), self.backing.clone());
        self.run(self.fs.clone().open(ino.0, write), move |r| {
            let opened = match r {
                Ok(o) => o,
                Err(e) => return reply.error(errno(&e)),
            };
            let fh = FileHandle(opened.fh);
            // No kept id may reach an object its store has removed since.
            let lock = || {
                let mut b = backing.lock().unwrap();
                if let Some((store, _)) = &opened.object {
                    b.apply_removals(store);
                }
                b
            };
            let file = match opened.kind {
                OpenKind::Local(file) => file,
                OpenKind::Pending => {
                    // Bytes arrive through regfs once verified, into the
                    // kernel's page cache (large readahead requests, and
                    // later reads of this handle never reach regfs), unless
                    // the inode is already in passthrough (then the file is
                    // cached and verified: share it).
                    let mut b = lock();
                    if let Some(p) = b.join(opened.fh, opened.ino) {
                        return reply.opened_passthrough(fh, FopenFlags::empty(), &p.id);
                    }
                    b.add_direct(opened.fh, opened.ino);
                    return reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
                }
                // An in-memory snapshot (status.json): no page cache.
                OpenKind::Memory => return reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
            };
            if passthrough.load(Ordering::Relaxed) {
                let mut b = lock();
                if let Some(p) = b.join(opened.fh, opened.ino) {
                    return reply.opened_passthrough(fh, FopenFlags::empty(), &p.id);
                }
                if b.direct.contains_key(&opened.ino) {
                    // Handles served by regfs are open: the kernel refuses
                    // passthrough until they close.
                    b.add_direct(opened.fh, opened.ino);
                    return reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
                }
                match reply.open_backing(file.as_ref()) {
                    Ok(id) => {
                        reply.opened_passthrough(fh, FopenFlags::empty(), &id);
                        let object = opened
                            .object
                            .clone()
                            .expect("a cached file is a store object")
                            .1;
                        b.insert(
                            opened.fh,
                            opened.ino,
                            Passthrough { id, _file: file },
                            object,
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "FUSE passthrough unavailable ({e}); serving reads through regfs"
                        );
                        passthrough.store(false, Ordering::Relaxed);
                    }
                }
            }
            // Content never changes under an inode: the kernel may keep its pages.
            reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let span = tracing::trace_span!("read", ino = ino.0, offset, size);
        let _e = span.enter();
        self.run(self.fs.clone().read(fh.0, offset, size), move |r| match r {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        let mut b = self.backing.lock().unwrap();
        b.release(fh.0);
        drop(b);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Read-only, nothing to flush: ENOSYS tells the kernel to stop sending
        // FLUSH, which would otherwise cost a round trip on every close.
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let usage = self.fs.store().usage();
        let files: u64 = self
            .fs
            .mirrors()
            .iter()
            .map(|m| m.current().node_count())
            .sum();
        reply.statfs(usage.bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _pos: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _off: u64,
        _len: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    // Operations any user may send that regfs does not implement. fuser's
    // defaults log a WARN for each call (an ioctl loop on a directory filled
    // the log): answer them quietly.

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // What any file that is not a device answers.
        reply.error(Errno::ENOTTY);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        // The kernel then treats files as always ready, and stops asking.
        reply.error(Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        // SEEK_DATA/SEEK_HOLE: the kernel then answers them itself.
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Nothing to sync; ENOSYS makes the kernel stop sending it.
        reply.error(Errno::ENOSYS);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }
}
