//! Sandbox commands (contract §12): `ciba-api admin sandbox users ...` makes test users;
//! `ciba-api sandbox approve|decline` answers for one, for scripts.

use ciba_domain::sandbox::Behaviour;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum SandboxAdminCommand {
    /// Test users with simulated authenticating apps (sandbox mode only).
    #[command(subcommand)]
    Users(SandboxUsersCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BehaviourArg {
    /// Waits for Approve or Decline on /sandbox or `ciba-api sandbox approve`.
    Manual,
    /// Approves every request after --delay seconds.
    Approve,
    /// Declines every request after --delay seconds.
    Decline,
    /// Never answers: requests expire (to test expiry and ping).
    Ignore,
}

impl From<BehaviourArg> for Behaviour {
    fn from(b: BehaviourArg) -> Self {
        match b {
            BehaviourArg::Manual => Behaviour::Manual,
            BehaviourArg::Approve => Behaviour::Approve,
            BehaviourArg::Decline => Behaviour::Decline,
            BehaviourArg::Ignore => Behaviour::Ignore,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SandboxUsersCommand {
    /// Make a test user with a synthetic NNIN and a simulated app; prints {"nnin", "sub"}.
    Create(CreateTestUser),
    /// List the test users with their synthetic NNINs, behaviours and device info.
    List,
}

#[derive(Args, Debug)]
pub struct CreateTestUser {
    /// What the simulated app does with a request.
    #[arg(long, value_enum, default_value = "manual")]
    pub behaviour: BehaviourArg,
    /// Seconds the approve and decline behaviours wait before they answer (0 to 3600).
    #[arg(long, default_value_t = 2)]
    pub delay: i64,
    /// The test user's given name.
    #[arg(long, default_value = "Test")]
    pub given_name: String,
    /// The test user's family name.
    #[arg(long, default_value = "Bruker")]
    pub family_name: String,
    /// The simulated phone's platform (device_info "p").
    #[arg(long, default_value = "ios")]
    pub platform: String,
    /// The simulated phone's manufacturer (device_info "ma").
    #[arg(long, default_value = "Apple")]
    pub manufacturer: String,
    /// The simulated phone's model (device_info "mo").
    #[arg(long, default_value = "iPhone15,2")]
    pub model: String,
}

/// What `ciba-api sandbox` reads.
pub(super) const SANDBOX_ENV: &str = concat!(
    "Environment:\n",
    database_env!(),
    "
  CIBA_SANDBOX             must be true: test users exist only in sandbox mode"
);

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Approve a test user's pending request as the simulated app.
    #[command(after_help = SANDBOX_ENV)]
    Approve(Answer),
    /// Decline a test user's pending request as the simulated app.
    #[command(after_help = SANDBOX_ENV)]
    Decline(Answer),
}

#[derive(Args, Debug)]
pub struct Answer {
    /// The test user's synthetic NNIN.
    #[arg(long)]
    pub nnin: String,
    /// The request's ref (as in its authorize_uri); default: the user's newest pending one.
    #[arg(long = "ref")]
    pub link_ref: Option<String>,
}
