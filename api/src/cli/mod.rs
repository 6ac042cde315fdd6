//! Command line: `ciba-api [serve]`, `ciba-api migrate`, `ciba-api admin ...`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The two variables every command reads, as each help text lists them.
macro_rules! database_env {
    () => {
        "  DATABASE_URL             sqlite://PATH (default sqlite://ciba.db) or postgres://USER:PASSWORD@HOST:PORT/DB
  CIBA_KEY_ENCRYPTION_KEY  base64 of 32 bytes; encrypts the signing keys at rest (required with
                           PostgreSQL; with SQLite, a key file beside the database is made)"
    };
}

mod sandbox;

pub use sandbox::{
    Answer, BehaviourArg, CreateTestUser, SandboxAdminCommand, SandboxCommand, SandboxUsersCommand,
};

const DATABASE_ENV: &str = concat!("Environment:\n", database_env!());

const SERVE_ENV: &str = concat!(
    "Environment (every setting: README.md, section Configuration):\n",
    database_env!(),
    "
  CIBA_LISTEN              HOST:PORT to listen on (default 127.0.0.1:8080; host names allowed)
  CIBA_ISSUER              the public base URL (default: http://HOST:PORT of CIBA_LISTEN)
  CIBA_METRICS_LISTEN      serve /metrics on this HOST:PORT instead of the API port
  CIBA_TLS_CERT, CIBA_TLS_KEY, CIBA_TLS_CLIENT_CA   terminate TLS here (mutual TLS clients)
  CIBA_LOG_FORMAT, RUST_LOG  text or json; the log filter (default info)"
);

const ADMIN_ENV: &str = concat!(
    "Environment:\n",
    database_env!(),
    "
  CIBA_OPERATOR            who runs the command, as the audit trail records it (default $USER)
  CIBA_ALLOW_INSECURE_CALLBACKS, CIBA_PING_ALLOWED_NETWORKS  what notification endpoints may be"
);

#[derive(Parser, Debug)]
#[command(
    name = "ciba-api",
    version,
    about = "CIBA / App2App authorization server and its admin CLI",
    after_help = SERVE_ENV
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (the default).
    #[command(after_help = SERVE_ENV)]
    Serve,
    /// Apply pending database migrations and exit.
    #[command(after_help = DATABASE_ENV)]
    Migrate,
    /// Operator commands.
    #[command(after_help = ADMIN_ENV)]
    Admin(AdminArgs),
    /// Answer for a sandbox test user's simulated app (CIBA_SANDBOX=true only).
    #[command(subcommand, after_help = sandbox::SANDBOX_ENV)]
    Sandbox(SandboxCommand),
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Merchant clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// End users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// One-time device enrollment codes.
    #[command(subcommand, name = "enrollment-codes")]
    EnrollmentCodes(EnrollmentCodesCommand),
    /// Enrolled devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The worker's job queue (ping notifications).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The key-encryption key (CIBA_KEY_ENCRYPTION_KEY).
    #[command(subcommand)]
    Kek(KekCommand),
    /// Sandbox test users (CIBA_SANDBOX=true only).
    #[command(subcommand)]
    Sandbox(SandboxAdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum KekCommand {
    /// Re-encrypt every stored private key under CIBA_KEY_ENCRYPTION_KEY, from the key in
    /// CIBA_KEY_ENCRYPTION_KEY_PREVIOUS, in one transaction.
    Rotate,
}

#[derive(Args, Debug)]
pub struct AuditRange {
    /// From this time on (UNIX seconds or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (UNIX seconds or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only events whose actor is this client.
    #[arg(long, allow_hyphen_values = true)]
    pub client: Option<String>,
    /// Only this action (e.g. request.approved).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Events, oldest first.
    List(AuditRange),
    /// Events as JSON lines (one object per line), for a SIEM.
    Export(AuditRange),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeliveryModeArg {
    Poll,
    Ping,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgArg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "PS256")]
    Ps256,
    #[value(name = "RS256")]
    Rs256,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthMethodArg {
    #[value(name = "client_secret_basic")]
    ClientSecretBasic,
    #[value(name = "client_secret_post")]
    ClientSecretPost,
    #[value(name = "private_key_jwt")]
    PrivateKeyJwt,
    #[value(name = "tls_client_auth")]
    TlsClientAuth,
    #[value(name = "self_signed_tls_client_auth")]
    SelfSignedTlsClientAuth,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    #[value(name = "fapi-ciba")]
    FapiCiba,
}

#[derive(Args, Debug)]
pub struct CreateClient {
    /// The merchant's name, as the authenticating app shows it to the user.
    #[arg(long)]
    pub name: String,
    /// Space-separated scopes the client may use.
    #[arg(long)]
    pub scope: String,
    /// An exact app_callback_uri the client may use (repeatable).
    #[arg(long = "callback-uri")]
    pub callback_uris: Vec<String>,
    /// The client may receive the sub_nnin claim.
    #[arg(long)]
    pub sub_nnin: bool,
    /// JWK set (JSON) of the client's public keys: for private_key_jwt and signed
    /// authentication requests.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// Or the URL where the client publishes its JWK set (fetched and cached).
    #[arg(long, conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,
    /// How the client learns a request is finished: poll the token endpoint, or be pinged.
    #[arg(long, value_enum, default_value = "poll")]
    pub delivery_mode: DeliveryModeArg,
    /// ping clients: the https URL notified when a request is finished.
    #[arg(long)]
    pub notification_endpoint: Option<String>,
    /// ID token signing algorithm.
    #[arg(long, value_enum, default_value = "ES256")]
    pub id_token_alg: AlgArg,
    /// How the client authenticates (token_endpoint_auth_method); only secret methods
    /// are issued a secret.
    #[arg(long, value_enum, default_value = "client_secret_basic")]
    pub auth_method: AuthMethodArg,
    /// A security profile: fapi-ciba (key or TLS methods, PS256/ES256, signed requests).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// tls_client_auth: the subject DN (RFC 4514) of the client's certificate, which must
    /// come from a CA of CIBA_TLS_CLIENT_CA.
    #[arg(long)]
    pub tls_subject_dn: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateClient {
    /// The client to change.
    #[arg(allow_hyphen_values = true)]
    pub client_id: String,
    /// A new name, as the authenticating app shows it.
    #[arg(long)]
    pub name: Option<String>,
    /// Space-separated scopes the client may use.
    #[arg(long)]
    pub scope: Option<String>,
    /// The exact app_callback_uri values (repeatable; replaces the registered list).
    #[arg(long = "callback-uri")]
    pub callback_uris: Vec<String>,
    /// A new JWK set (JSON) of the client's public keys.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// Or a new URL of the client's JWK set (fetched and cached).
    #[arg(long, conflicts_with = "jwks_file")]
    pub jwks_uri: Option<String>,
    /// A new notification endpoint (ping clients).
    #[arg(long)]
    pub notification_endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Register a client; prints its id, and its secret when its method has one (shown
    /// only once).
    Create(CreateClient),
    /// List clients (never their secrets).
    List,
    /// One client (never its secret).
    Show {
        /// The client's id, as `clients create` printed it.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Change a client: each given option replaces what is registered.
    Update(UpdateClient),
    /// Issue a new secret (printed once); the old one keeps working for --grace seconds.
    RotateSecret {
        /// The client's id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// Seconds the old secret stays valid (0: it stops at once).
        #[arg(long, default_value_t = 0)]
        grace: i64,
    },
    /// Disable a client: its tokens and credentials stop working.
    Disable {
        /// The client's id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Enable a disabled client.
    Enable {
        /// The client's id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Register a user; prints the subject (`sub`) the tokens will carry.
    Create {
        /// The user's Norwegian national identity number (11 digits, checksums valid).
        #[arg(long)]
        nnin: String,
        /// The user's given name.
        #[arg(long)]
        given_name: String,
        /// The user's family name.
        #[arg(long)]
        family_name: String,
        /// Birth date, YYYY-MM-DD.
        #[arg(long)]
        birthdate: String,
        /// The user's BankID pid, when known (optional).
        #[arg(long)]
        bankid_pid: Option<String>,
    },
    /// List users (subjects and names; never NNINs).
    List,
}

#[derive(Subcommand, Debug)]
pub enum EnrollmentCodesCommand {
    /// Make a one-time code with which the user's authenticating app enrolls a device.
    Create {
        /// The NNIN of the user who will enroll a device with the code.
        #[arg(long)]
        nnin: String,
        /// Only a device whose key is hardware-bound (declared `hwk`) may enroll with it.
        #[arg(long)]
        require_hwk: bool,
    },
    /// Codes not yet used nor expired (by id, never the code itself).
    List {
        /// Only the codes of the user with this subject.
        #[arg(long, allow_hyphen_values = true)]
        sub: Option<String>,
    },
    /// Revoke an unused code (by the id `create` and `list` print).
    Revoke {
        /// The code's id (not the code itself).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DevicesCommand {
    /// Enrolled devices: all, or one user's.
    List {
        /// Only the devices of the user with this subject.
        #[arg(long, allow_hyphen_values = true)]
        sub: Option<String>,
        /// Only the devices of the user with this NNIN.
        #[arg(long)]
        nnin: Option<String>,
    },
    /// Revoke a device: it can no longer authenticate nor answer requests.
    Revoke {
        /// The device's id. Ids are base64url: one in 64 starts with '-', which is a value
        /// here, not a flag.
        #[arg(allow_hyphen_values = true)]
        device_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Publish new signing keys now; they start signing after the lead time.
    Rotate {
        /// Seconds between publication and first signature (default CIBA_KEY_PUBLISH_LEAD).
        #[arg(long)]
        lead: Option<i64>,
    },
    /// Revoke a leaked key at once: it leaves the JWKS and is no longer accepted or used
    /// (by every API process from its next key reload, CIBA_KEY_REFRESH_INTERVAL); a
    /// successor signs immediately.
    Revoke {
        /// The key id (kid) as `keys list` and the JWKS show it.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Signing keys and their state (never the private keys).
    List,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs in a status (default: the dead letters).
    List {
        /// Which jobs: queued, running, done or dead.
        #[arg(long, value_enum, default_value = "dead")]
        status: JobStatusArg,
        /// At most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead job back in the queue with fresh attempts.
    Retry {
        /// The job's id, as `jobs list` shows it.
        #[arg(allow_hyphen_values = true)]
        job_id: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum JobStatusArg {
    Queued,
    Running,
    Done,
    Dead,
}

impl JobStatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => ciba_store::jobs::QUEUED,
            Self::Running => ciba_store::jobs::RUNNING,
            Self::Done => ciba_store::jobs::DONE,
            Self::Dead => ciba_store::jobs::DEAD,
        }
    }
}

impl Cli {
    /// The command line, with every admin command's help naming the environment it reads.
    pub fn command_with_env_help() -> clap::Command {
        fn with_env(cmd: clap::Command) -> clap::Command {
            let cmd = if cmd.get_after_help().is_none() {
                cmd.after_help(ADMIN_ENV)
            } else {
                cmd
            };
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|c| c.get_name().to_owned())
                .collect();
            names
                .iter()
                .fold(cmd, |cmd, name| cmd.mut_subcommand(name, with_env))
        }
        use clap::CommandFactory;
        Self::command().mut_subcommand("admin", with_env)
    }

    /// Parse the process's arguments (exits with help or a usage error, as clap does).
    pub fn parse_args() -> Self {
        use clap::FromArgMatches;
        let matches = Self::command_with_env_help().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's help names the environment it reads and describes every flag.
    #[test]
    fn help_names_the_environment_and_describes_every_flag() {
        fn walk(cmd: &mut clap::Command, path: String, out: &mut Vec<String>) {
            let help = cmd.render_long_help().to_string();
            if cmd.get_about().is_none() && path != "ciba-api" {
                out.push(format!("{path}: undescribed"));
            }
            if !help.contains("DATABASE_URL") {
                out.push(format!("{path}: no environment"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    out.push(format!("{path} {id}: undescribed"));
                }
            }
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|c| c.get_name().to_owned())
                .collect();
            for name in names {
                if name == "help" {
                    continue;
                }
                let mut sub = cmd.find_subcommand_mut(&name).unwrap().clone();
                walk(&mut sub, format!("{path} {name}"), out);
            }
        }
        let mut cmd = Cli::command_with_env_help();
        cmd.build();
        let mut missing = Vec::new();
        walk(&mut cmd, "ciba-api".into(), &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }

    fn admin(args: &[&str]) -> AdminCommand {
        let argv = ["ciba-api", "admin"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Some(Command::Admin(a))) => a.command,
            other => panic!("{args:?} did not parse as an admin command: {other:?}"),
        }
    }

    #[test]
    fn ids_starting_with_a_hyphen_are_values() {
        // Random ids are base64url: one in 64 starts with '-'.
        let id = "-1H9CMLLjcwyFMqHZFpidRHdLKPalsKWVg6Zdn-opg0";
        assert!(matches!(
            admin(&["devices", "revoke", id]),
            AdminCommand::Devices(DevicesCommand::Revoke { device_id }) if device_id == id
        ));
        assert!(matches!(
            admin(&["devices", "list", "--sub", id]),
            AdminCommand::Devices(DevicesCommand::List { sub: Some(s), .. }) if s == id
        ));
        assert!(matches!(
            admin(&["clients", "disable", id]),
            AdminCommand::Clients(ClientsCommand::Disable { client_id }) if client_id == id
        ));
        assert!(matches!(
            admin(&["clients", "enable", id]),
            AdminCommand::Clients(ClientsCommand::Enable { client_id }) if client_id == id
        ));
        assert!(matches!(
            admin(&["jobs", "retry", id]),
            AdminCommand::Jobs(JobsCommand::Retry { job_id }) if job_id == id
        ));
    }
}
