//! Lowering the sensor's own scheduling priority.

#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("setpriority({nice}) failed: {source}")]
    Set {
        nice: i32,
        #[source]
        source: std::io::Error,
    },
}

/// Sets the nice value of the calling thread. On Linux the nice value is per thread and new
/// threads inherit it, so call this before any runtime or worker thread is started.
pub fn set_nice(nice: i32) -> Result<(), PriorityError> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: setpriority has no memory-safety preconditions; who = 0 is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        return Err(PriorityError::Set {
            nice,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The nice value of the calling thread.
pub fn current_nice() -> i32 {
    // getpriority can legitimately return -1, so errno is cleared and checked.
    // SAFETY: errno location is thread-local; getpriority has no preconditions.
    unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_priority_in_a_thread_sticks_to_that_thread() {
        let before = current_nice();
        let inside = std::thread::spawn(move || {
            set_nice((before + 1).min(19)).unwrap();
            current_nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, (before + 1).min(19));
        assert_eq!(current_nice(), before, "other threads keep their priority");
        set_nice(0).unwrap();
    }
}
