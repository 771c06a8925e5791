//! The Redis commands of a path on their own: a lost update in Redis (a
//! SET of a value computed from a GET), a WATCHed read that EXEC's reply
//! confirms, and a lock (`SET NX`) whose TTL is short enough to run out
//! under its holder. A lock released before the COMMIT of what it protects
//! is `protect`'s (it is found where the read it should protect is).

use std::collections::BTreeSet;

use crate::strategy::RedisEffect;

use super::paths::Path;
use super::protect::Analysis;

/// A TTL at least this long (ms) is not called a risk: the bodies racelab
/// runs last milliseconds.
const LONG_TTL_MS: u64 = 10_000;

/// The TTL of a lock as milliseconds, from the command's text (`50 ms`,
/// `60 s`); `None` when it is a variable.
fn ttl_ms(ttl: &str) -> Option<u64> {
    let (n, unit) = ttl.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        _ => None,
    }
}

impl Analysis<'_> {
    /// What the path's Redis commands do on their own.
    pub fn redis(&mut self, p: &Path) {
        for &(g, w) in &p.redis_lost {
            let (g, w) = (&self.prog.redis[g], &self.prog.redis[w]);
            self.unsafe_(
                vec![g.line, w.line],
                format!(
                    "lost update in Redis: line {} sets the key ({}) from what line {} read ({}), and nothing stops another buyer's write in between: it is overwritten",
                    w.line, w.name, g.line, g.name
                ),
            );
        }
    }

    /// The EXEC (`Program::redis` index) that confirms the Redis read
    /// `cmd` on this path: the read was made while its key was WATCHed, the
    /// transaction EXEC ran queued a write of that key, and a decision
    /// showed EXEC's reply was not nil.
    pub fn watched_and_checked(&self, p: &Path, cmd: usize) -> Option<usize> {
        if !p.watched_reads.contains(&cmd) {
            return None;
        }
        let keys: Vec<_> = self.prog.redis[cmd].key_args().collect();
        p.exec_ok
            .iter()
            .find(|x| {
                let watched = x
                    .watched
                    .iter()
                    .any(|w| self.prog.redis[*w].key_args().any(|k| keys.contains(&k)));
                let writes = x.queued.iter().any(|q| {
                    let c = &self.prog.redis[*q];
                    matches!(
                        c.effect(),
                        RedisEffect::Count(_) | RedisEffect::Write { .. }
                    ) && c.key_args().any(|k| keys.contains(&k))
                });
                watched && writes
            })
            .map(|x| x.exec)
    }

    /// A Redis lock whose TTL can run out under its holder, with the
    /// `\sleep`s any path reaches while holding it.
    pub fn redis_locks(&mut self, paths: &[Path]) {
        let mut locks: BTreeSet<usize> = BTreeSet::new();
        let mut sleeps: BTreeSet<(usize, usize)> = BTreeSet::new();
        for p in paths {
            locks.extend(p.redis_locks.iter().map(|(c, _)| *c));
            sleeps.extend(p.redis_lock_sleeps.iter().copied());
        }
        for c in locks {
            let cmd = &self.prog.redis[c];
            let RedisEffect::Lock { ttl: Some(ttl) } = cmd.effect() else {
                continue;
            };
            if ttl_ms(&ttl).is_some_and(|ms| ms >= LONG_TTL_MS) {
                continue;
            }
            let held: Vec<usize> = sleeps
                .iter()
                .filter(|(l, _)| *l == c)
                .map(|(_, line)| *line)
                .collect();
            let mut lines = vec![cmd.line];
            lines.extend(&held);
            let held = match held.as_slice() {
                [] => String::new(),
                [one] => format!(", and line {one} sleeps while holding it"),
                more => format!(
                    ", and lines {} sleep while holding it",
                    more.iter()
                        .map(|l| l.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.unsure(
                lines,
                format!(
                    "the Redis lock of line {} expires after {ttl}{held}: a holder still running past it shares the product with the next buyer to take the lock, since nothing fences it (safe only while the body stays under the TTL)",
                    cmd.line
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_as_milliseconds() {
        assert_eq!(ttl_ms("50 ms"), Some(50));
        assert_eq!(ttl_ms("60 s"), Some(60_000));
        assert_eq!(ttl_ms("a variable TTL in ms"), None);
    }
}
