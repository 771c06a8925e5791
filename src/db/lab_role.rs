//! The lab's own role on a server racelab did not start: the buyers and
//! the strategy's `\setup` log in as it, and it owns the lab schema and
//! nothing else, so what a script does (whatever a reader can see of it or
//! not: a function's body, dynamic SQL) stays in the lab: another schema
//! is not its to drop, `COPY ... PROGRAM` needs a privilege it lacks, and
//! a role that logs in as itself has no other role to `SET ROLE` or
//! `RESET ROLE` to. racelab's own work (the lab's reset, the audit) goes
//! on as the URL's user.
//!
//! One role per database and lab schema, `racelab_<10 hex>` (a hash of
//! both: roles are shared by the databases of a server), marked by a
//! comment; racelab gives it a fresh random password before every run (as
//! a SCRAM verifier, so the password never reaches the server or its log)
//! and keeps the role, as it keeps the lab schema. It needs a URL user
//! with SUPERUSER or CREATEROLE, and a server that lets the new role log in
//! the way the URL's user does; where either is missing racelab says why,
//! and refuses what it cannot confine instead (`strategy::confine`).

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};

use super::auth;
use crate::secret::Secret;

/// The prefix of the comment that marks a role as racelab's.
const MARKER: &str = "racelab lab role";

/// A role the buyers of one lab log in as.
pub struct LabRole {
    pub name: String,
    /// How to log in as it: the URL's server and database, its name, its
    /// password of this run.
    pub options: PgConnectOptions,
    pub password: Secret,
}

impl std::fmt::Debug for LabRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabRole")
            .field("name", &self.name)
            .field("password", &self.password)
            .finish()
    }
}

/// The role's name for `schema` in `database`.
pub fn role_name(database: &str, schema: &str) -> String {
    let hash = Sha256::digest(format!("{database}\0{schema}").as_bytes());
    let tag: String = hash[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("racelab_{tag}")
}

/// Make (or ready again) the lab's role on the server `conn` is connected
/// to as the URL's user, and check that it can log in with `base` (the
/// URL's options). `Ok(Err(why))` when racelab cannot confine the lab
/// there, saying why.
pub async fn establish(
    conn: &mut PgConnection,
    base: &PgConnectOptions,
    schema: &str,
) -> anyhow::Result<Result<LabRole, String>> {
    let (superuser, createrole, database): (bool, bool, String) = sqlx::query_as(
        "SELECT r.rolsuper, r.rolcreaterole, current_database()::text \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !superuser && !createrole {
        return Ok(Err(
            "its user may not create roles (it has neither SUPERUSER nor CREATEROLE)".into(),
        ));
    }
    let name = role_name(&database, schema);
    let comment: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await?;
    let exists = match comment {
        None => false,
        Some(Some(c)) if c.starts_with(MARKER) => true,
        Some(_) => {
            return Ok(Err(format!(
                "a role named {name} exists that racelab did not make"
            )))
        }
    };
    let password = Secret::random();
    let verifier = auth::sql_literal(&auth::scram_verifier(&password));
    let attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
                      NOBYPASSRLS CONNECTION LIMIT -1";
    let mut sql = if exists {
        format!("ALTER ROLE {name} {attributes} PASSWORD {verifier};")
    } else {
        format!(
            "CREATE ROLE {name} {attributes} PASSWORD {verifier}; \
             COMMENT ON ROLE {name} IS {};",
            auth::sql_literal(&format!(
                "{MARKER}: the buyers of lab schema \"{schema}\" in database \"{database}\" \
                 log in as it; made by racelab, which sets a new password before every run"
            ))
        )
    };
    if !superuser {
        // racelab's own user resets the lab the role owns: it must be able
        // to act as it (a superuser can anyway).
        sql.push_str(&format!(" GRANT {name} TO CURRENT_USER;"));
    }
    if let Err(e) = sqlx::raw_sql(&sql).execute(&mut *conn).await {
        return Ok(Err(format!("it refused to make the role {name}: {e}")));
    }
    if superuser {
        // `explore` shortens its buyers' deadlock_timeout, a superuser's
        // setting, which a superuser may let a role set (PostgreSQL 15 and
        // later); elsewhere explore waits the server's own.
        let _ = sqlx::raw_sql(&format!(
            "GRANT SET ON PARAMETER deadlock_timeout TO {name}"
        ))
        .execute(&mut *conn)
        .await;
    }
    let options = base.clone().username(&name).password(password.expose());
    match PgConnection::connect_with(&options).await {
        Ok(c) => {
            let _ = c.close().await;
        }
        Err(e) => {
            return Ok(Err(format!(
                "the server does not let its new role {name} log in: {e}"
            )))
        }
    }
    Ok(Ok(LabRole {
        name,
        options,
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_role_per_database_and_schema() {
        let a = role_name("app", "racelab");
        assert!(
            a.starts_with("racelab_") && a.len() == "racelab_".len() + 10,
            "{a}"
        );
        assert_eq!(a, role_name("app", "racelab"));
        assert_ne!(a, role_name("app2", "racelab"));
        assert_ne!(a, role_name("app", "racelab2"));
    }
}
