//! The process's own limits, checked before a race: every buyer's
//! connection is an open file, and a race needs them all at once. Too few
//! would fail mid-start with an opaque error (EMFILE, EAGAIN), so the soft
//! limit on open files is raised to what the race needs where the hard
//! limit allows it, and otherwise the caller refuses the race before
//! anything starts.

/// Open files a race needs beyond one per connection: the runtime, the
/// monitor and audit connections, result files, logs.
pub const SPARE_FILES: u64 = 64;

/// Why the process cannot hold `needed` open files at once: its hard limit
/// (`ulimit -Hn`) is lower. Raises the soft limit as far as needed first.
pub fn ensure_open_files(needed: u64) -> Result<(), OpenFiles> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        // Nothing known: the race reports what goes wrong, if anything.
        return Ok(());
    }
    let unlimited = |v: libc::rlim_t| v == libc::RLIM_INFINITY;
    if unlimited(lim.rlim_cur) || lim.rlim_cur >= needed {
        return Ok(());
    }
    if !unlimited(lim.rlim_max) && (lim.rlim_max) < needed {
        return Err(OpenFiles {
            needed,
            hard: lim.rlim_max,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: needed,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit through a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(OpenFiles {
            needed,
            hard: lim.rlim_cur,
        });
    }
    Ok(())
}

/// The open files a race needs and the most this process may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub needed: u64,
    pub hard: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_up_to_the_hard_one() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_max == libc::RLIM_INFINITY {
            // No ceiling: any number of files can be had.
            assert_eq!(ensure_open_files(1 << 20), Ok(()));
            return;
        }
        let hard = lim.rlim_max;
        assert_eq!(ensure_open_files(hard), Ok(()));
        let mut now = lim;
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert!(now.rlim_cur >= hard);
        assert_eq!(
            ensure_open_files(hard + 1),
            Err(OpenFiles {
                needed: hard + 1,
                hard
            })
        );
    }
}
