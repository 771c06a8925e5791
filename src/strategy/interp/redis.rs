//! One `\redis` command of a session on the buyer's own Redis
//! connection: its arguments built from literals and variables (keys under
//! racelab's prefix), its reply stored, a WATCH or MULTI left open by a
//! try discarded.

use std::time::Instant;

use super::end::{event, fail_message, Fail};
use super::session::{Kind, RedisConn, Session};
use crate::outcome::{TraceEvent, TraceKind};
use crate::strategy::redis::{Arg as RArg, Part, RedisCmd};

impl Session<'_> {
    /// Give this buyer its Redis connection.
    pub fn set_redis(&mut self, conn: RedisConn) {
        self.redis = Some(conn);
    }

    /// A try ended with a WATCH or MULTI still open: discard it, so the
    /// next try does not start inside it.
    pub(super) async fn close_redis_tx(&mut self) {
        self.redis_open = false;
        if let Some(r) = &mut self.redis {
            let _: Result<redis::Value, _> = redis::cmd("DISCARD").query_async(&mut r.conn).await;
            let _: Result<redis::Value, _> = redis::cmd("UNWATCH").query_async(&mut r.conn).await;
        }
    }

    /// Append the value of `slot` as a Redis argument.
    pub(super) fn push_value(
        &self,
        out: &mut String,
        slot: usize,
        line: usize,
    ) -> Result<(), Fail> {
        let s = &self.slots[slot];
        match s.kind {
            Kind::Int => {
                use std::fmt::Write as _;
                let _ = write!(out, "{}", s.int);
                Ok(())
            }
            Kind::Text => {
                out.push_str(&s.text);
                Ok(())
            }
            Kind::Null | Kind::Unset => Err(Fail::Error(format!(
                "variable :{} {} (line {line})",
                self.program.vars[slot],
                if s.kind == Kind::Null {
                    "is NULL"
                } else {
                    "has no value yet"
                }
            ))),
        }
    }

    /// Send one `\redis` command on the buyer's connection and store its
    /// reply: integers as integers, strings as text, nil as NULL, an
    /// array (EXEC's replies) as its last element.
    pub(super) async fn redis_exec(
        &mut self,
        cmd: &RedisCmd,
        try_no: u32,
        trace: Option<&mut Vec<TraceEvent>>,
    ) -> Result<(), Fail> {
        let line = cmd.line;
        let Some(prefix) = self.redis.as_ref().map(|r| r.prefix.clone()) else {
            return Err(Fail::Error(format!(
                "no Redis connection for `\\redis` (line {line})"
            )));
        };
        let mut c = redis::cmd(&cmd.name);
        let mut buf = String::new();
        for (arg, &key) in cmd.args.iter().zip(&cmd.keys) {
            buf.clear();
            if key {
                buf.push_str(&prefix);
            }
            match arg {
                RArg::Lit(s) => buf.push_str(s),
                RArg::Var(slot) => self.push_value(&mut buf, *slot, line)?,
                RArg::Template(parts) => {
                    for p in parts {
                        match p {
                            Part::Lit(s) => buf.push_str(s),
                            Part::Var(slot) => self.push_value(&mut buf, *slot, line)?,
                        }
                    }
                }
            }
            c.arg(buf.as_str());
        }
        let start = trace.is_some().then(Instant::now);
        let conn = &mut self.redis.as_mut().expect("checked above").conn;
        let reply: Result<redis::Value, redis::RedisError> = c.query_async(conn).await;
        match cmd.name.as_str() {
            "WATCH" | "MULTI" => self.redis_open = true,
            "EXEC" | "DISCARD" | "UNWATCH" => self.redis_open = false,
            _ => {}
        }
        let result = match reply {
            Ok(v) => {
                if let Some(slot) = cmd.into {
                    self.store_reply(slot, &v);
                }
                Ok(())
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(
                Fail::Lost(format!("lost the Redis connection: {e} (line {line})")),
            ),
            Err(e) => Err(Fail::Error(format!("redis: {e} (line {line})"))),
        };
        if let (Some(t), Some(start)) = (trace, start) {
            let mut ev = event(TraceKind::Redis, try_no, line, cmd.display.clone(), start);
            if let Some(slot) = cmd.into {
                ev.values
                    .push((self.program.vars[slot].clone(), self.show(slot)));
            }
            ev.error = result.as_ref().err().map(fail_message);
            t.push(ev);
        }
        result
    }

    pub(super) fn store_reply(&mut self, slot: usize, v: &redis::Value) {
        use redis::Value as V;
        let s = &mut self.slots[slot];
        match v {
            V::Nil => s.kind = Kind::Null,
            V::Int(n) => {
                s.kind = Kind::Int;
                s.int = *n;
            }
            V::Boolean(b) => {
                s.kind = Kind::Int;
                s.int = i64::from(*b);
            }
            V::Array(items) | V::Set(items) => match items.last() {
                Some(last) => self.store_reply(slot, last),
                None => {
                    s.kind = Kind::Text;
                    s.text.clear();
                }
            },
            V::BulkString(b) => {
                s.kind = Kind::Text;
                s.text.clear();
                s.text.push_str(&String::from_utf8_lossy(b));
            }
            V::SimpleString(t) => {
                s.kind = Kind::Text;
                s.text.clone_from(t);
            }
            V::Okay => {
                s.kind = Kind::Text;
                s.text.clear();
                s.text.push_str("OK");
            }
            other => {
                s.kind = Kind::Text;
                s.text = format!("{other:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    #[test]
    fn replies_become_variables() {
        let prog = crate::strategy::parse("t.sql", "\\set a 1\nSELECT :a;").unwrap();
        let slot = prog.vars.iter().position(|v| v == "a").unwrap();
        let mut s = prog.session(1);
        let mut stored = |v: V| {
            s.store_reply(slot, &v);
            (s.slots[slot].kind, s.show(slot))
        };
        assert_eq!(stored(V::Int(7)), (Kind::Int, "7".into()));
        assert_eq!(stored(V::Nil), (Kind::Null, "NULL".into()));
        assert_eq!(
            stored(V::BulkString(b"left".to_vec())),
            (Kind::Text, "left".into())
        );
        // EXEC's replies: the last one is the value.
        assert_eq!(
            stored(V::Array(vec![V::Okay, V::Int(3)])),
            (Kind::Int, "3".into())
        );
        assert_eq!(stored(V::Okay), (Kind::Text, "OK".into()));
    }

    #[test]
    fn a_null_argument_is_an_error_naming_the_variable() {
        let prog = crate::strategy::parse("t.sql", "\\set a 1\nSELECT :a;").unwrap();
        let slot = prog.vars.iter().position(|v| v == "a").unwrap();
        let mut s = prog.session(1);
        let mut out = String::new();
        let unset = s.push_value(&mut out, slot, 3);
        assert!(
            matches!(unset, Err(Fail::Error(m)) if m == "variable :a has no value yet (line 3)")
        );
        s.set_int(slot, 42);
        assert!(s.push_value(&mut out, slot, 3).is_ok());
        assert_eq!(out, "42");
    }
}
