//! Command line: `ciba-api [serve]`, `ciba-api migrate`, `ciba-api admin ...`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ciba-api",
    version,
    about = "CIBA / App2App authorization server and its admin CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Operator commands.
    Admin(AdminArgs),
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
    #[arg(long, value_enum, default_value = "poll")]
    pub delivery_mode: DeliveryModeArg,
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
    #[arg(allow_hyphen_values = true)]
    pub client_id: String,
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
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Change a client: each given option replaces what is registered.
    Update(UpdateClient),
    /// Issue a new secret (printed once); the old one keeps working for --grace seconds.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// Seconds the old secret stays valid (0: it stops at once).
        #[arg(long, default_value_t = 0)]
        grace: i64,
    },
    /// Disable a client: its tokens and credentials stop working.
    Disable {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Enable a disabled client.
    Enable {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    Create {
        #[arg(long)]
        nnin: String,
        #[arg(long)]
        given_name: String,
        #[arg(long)]
        family_name: String,
        /// YYYY-MM-DD
        #[arg(long)]
        birthdate: String,
        #[arg(long)]
        bankid_pid: Option<String>,
    },
    /// List users (subjects and names; never NNINs).
    List,
}

#[derive(Subcommand, Debug)]
pub enum EnrollmentCodesCommand {
    Create {
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
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DevicesCommand {
    List {
        /// Only the devices of the user with this subject.
        #[arg(long, allow_hyphen_values = true)]
        sub: Option<String>,
        /// Only the devices of the user with this NNIN.
        #[arg(long)]
        nnin: Option<String>,
    },
    Revoke {
        /// Ids are base64url: one in 64 starts with '-', which is a value here, not a flag.
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
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs in a status (default: the dead letters).
    List {
        #[arg(long, value_enum, default_value = "dead")]
        status: JobStatusArg,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead job back in the queue with fresh attempts.
    Retry {
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

#[cfg(test)]
mod tests {
    use super::*;

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
