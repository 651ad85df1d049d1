//! Which deployment a booting machine gets (docs/selection-rules.md), and the checks on a new deployment
//! (docs/deployment-checks.md, in [`checks`]).
//!
//! [`decide`] is pure: the catalog, what the machine said about itself, the context, the
//! machine's [`History`] and the server settings go in; a [`Decision`] comes out, with the
//! action, the warnings, and an [`Evaluation`] of every deployment in the catalog citing the
//! rule that settled it (of an indexed catalog, every deployment whose collection holds the
//! machine, see [`crate::catalog::index`]). [`explain_text`] renders that as the `explain` report (rule 10). The
//! DHCP, HTTP and policy layers act on the decision and log it; they never re-decide.

pub mod checks;
pub mod deployment_id;
mod explain;
pub mod history;
pub mod templates;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::ClientArch;
pub use crate::catalog::identity::UuidDistrust;
use crate::catalog::index::CatalogView;
pub use crate::catalog::MachineIdentity;
use crate::catalog::{BootImage, Deployment, DeploymentId, Device, ImageArch, Purpose, Rerun};
pub use explain::explain_text;
pub use history::{Attempt, Guard, History, Outcome, Resume};

/// Where the request comes from (docs/selection-rules.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "context", rename_all = "snake_case")]
pub enum Context {
    /// A machine booting from the network.
    Pxe,
    /// A boot environment started from boot media.
    Media,
    /// A running operating system; the only context that evaluates schedules (rule 2).
    Client {
        /// The current time, unix seconds.
        now: i64,
    },
}

impl Context {
    /// PXE or media: a boot environment, where schedules are not evaluated (rule 2) and the
    /// boot image must fit the firmware (rule 5a).
    pub fn is_boot_environment(self) -> bool {
        !matches!(self, Context::Client { .. })
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Pxe => f.write_str("pxe"),
            Context::Media => f.write_str("media"),
            Context::Client { now } => write!(f, "client at {now}"),
        }
    }
}

/// The per-server settings the decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Machines that match no device may get deployments (rule 9). Off by default.
    pub unknown_computers_enabled: bool,
    /// A PXE password is set: it is asked before any deployment starts through PXE (rule 9).
    pub pxe_password_set: bool,
    /// The collection that may boot pre-production boot images; a deployment whose boot image
    /// is pre-production is no candidate for any other machine.
    #[serde(default)]
    pub pre_production_collection: Option<String>,
}

/// The rules of docs/selection-rules.md (and the one reference check of docs/deployment-checks.md) that an evaluation or
/// warning cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Rule 1: the collection holds the machine and the deployment is available to the context.
    Rule1Candidates,
    /// Rule 2: schedules are evaluated by running clients only.
    Rule2NoSchedule,
    /// Rule 3: a preferred deployment id that is a candidate runs unattended.
    Rule3Preferred,
    /// Rule 4: hidden deployments never appear in a menu or list.
    Rule4Hidden,
    /// Rule 5: required before available, then the highest deployment id.
    Rule5Required,
    /// Rule 5a: the boot image must start on the client's firmware.
    Rule5aArchitecture,
    /// Rule 6: available candidates make a menu whose default is the local disk.
    Rule6Available,
    /// Rule 7: a required deployment that started through PXE is not started again by PXE.
    Rule7LoopGuard,
    /// Rule 7: media and clients follow the deployment's rerun behaviour.
    Rule7Rerun,
    /// Rule 7: a run that restarted the machine mid-sequence continues on its next boot.
    Rule7Resume,
    /// Rule 8: nothing to offer.
    Rule8NoCandidate,
    /// Rule 9: unknown computers are switched off on this server.
    Rule9UnknownDisabled,
    /// Section 4: the deployment refers to a collection, task sequence or boot image that does
    /// not exist (or a task sequence without a boot image), so it cannot start.
    UnresolvedReference,
    /// Section 10: a UUID that does not tell machines apart is not used to identify one.
    Identity,
    /// Section 8: a pre-production boot image starts only on the pre-production collection.
    PreProduction,
}

impl Rule {
    /// The rule's number in docs/selection-rules.md (`"5a"`), or for what that page does not
    /// number, the page that says it (`"docs/deployment-checks.md"`).
    pub fn number(self) -> &'static str {
        match self {
            Rule::Rule1Candidates => "1",
            Rule::Rule2NoSchedule => "2",
            Rule::Rule3Preferred => "3",
            Rule::Rule4Hidden => "4",
            Rule::Rule5Required => "5",
            Rule::Rule5aArchitecture => "5a",
            Rule::Rule6Available => "6",
            Rule::Rule7LoopGuard | Rule::Rule7Rerun | Rule::Rule7Resume => "7",
            Rule::Rule8NoCandidate => "8",
            Rule::Rule9UnknownDisabled => "9",
            Rule::UnresolvedReference => "docs/deployment-checks.md",
            Rule::Identity => "docs/identity.md",
            Rule::PreProduction => "docs/status.md",
        }
    }

    /// How a text cites it: `rule 5a`, or `docs/deployment-checks.md`.
    pub fn cite(self) -> String {
        match self {
            Rule::UnresolvedReference | Rule::Identity | Rule::PreProduction => {
                self.number().to_string()
            }
            _ => format!("rule {}", self.number()),
        }
    }

    /// A short name for the rule.
    pub fn title(self) -> &'static str {
        match self {
            Rule::Rule1Candidates => "candidates",
            Rule::Rule2NoSchedule => "no schedule at boot",
            Rule::Rule3Preferred => "preferred deployment id",
            Rule::Rule4Hidden => "hidden",
            Rule::Rule5Required => "required first, highest id",
            Rule::Rule5aArchitecture => "architecture",
            Rule::Rule6Available => "available menu",
            Rule::Rule7LoopGuard => "loop guard",
            Rule::Rule7Rerun => "rerun behaviour",
            Rule::Rule7Resume => "continuing after a restart",
            Rule::Rule8NoCandidate => "no candidate",
            Rule::Rule9UnknownDisabled => "unknown computers off",
            Rule::UnresolvedReference => "unresolved reference",
            Rule::Identity => "machine identity",
            Rule::PreProduction => "pre-production boot image",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.cite(), self.title())
    }
}

/// Why a deployment runs without a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// Named by `SMSTSPreferredAdvertID` (rule 3).
    Preferred,
    /// The winning required candidate (rule 5).
    Required,
    /// A run that restarted the machine in the middle of its task sequence continues (rule 7):
    /// [`Decision::resume_at`] says at which step.
    Continuing,
}

/// What a menu does when nobody picks an entry before the timeout (rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MenuDefault {
    /// Boot from the local disk. (A running client just does nothing.)
    LocalDisk,
}

/// Why nothing is offered (rule 8), from the most to the least specific cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoDeploymentReason {
    /// The machine matches no device and unknown computers are switched off (rule 9).
    UnknownComputersDisabled,
    /// A required deployment already started through PXE and the guard is not cleared (rule 7).
    LoopGuard {
        /// The deployment whose start set the guard.
        started: DeploymentId,
    },
    /// The rerun behaviour of every required candidate holds it back (rule 7).
    RerunBlocked,
    /// The only candidates are hidden and available, and no preferred id names one (rule 4).
    OnlyHidden,
    /// Deployments target the machine but no boot image fits its firmware (rule 5a).
    NoBootableCandidate,
    /// Deployments target the machine but refer to something that does not exist (docs/deployment-checks.md).
    UnresolvedReference,
    /// Deployments target the machine but their boot image is pre-production and the machine
    /// is outside the pre-production collection (docs/status.md).
    PreProductionOnly,
    /// Deployments target the running client but none is inside its schedule (rule 2).
    OutsideSchedule,
    /// No deployment targets the machine in this context (rule 1).
    NoCandidate,
}

impl NoDeploymentReason {
    /// The rule that settled it.
    pub fn rule(self) -> Rule {
        match self {
            NoDeploymentReason::UnknownComputersDisabled => Rule::Rule9UnknownDisabled,
            NoDeploymentReason::LoopGuard { .. } => Rule::Rule7LoopGuard,
            NoDeploymentReason::RerunBlocked => Rule::Rule7Rerun,
            NoDeploymentReason::OnlyHidden => Rule::Rule4Hidden,
            NoDeploymentReason::NoBootableCandidate => Rule::Rule5aArchitecture,
            NoDeploymentReason::UnresolvedReference => Rule::UnresolvedReference,
            NoDeploymentReason::PreProductionOnly => Rule::PreProduction,
            NoDeploymentReason::OutsideSchedule => Rule::Rule2NoSchedule,
            NoDeploymentReason::NoCandidate => Rule::Rule8NoCandidate,
        }
    }
}

impl fmt::Display for NoDeploymentReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoDeploymentReason::UnknownComputersDisabled => {
                f.write_str("unknown computers are switched off on this server")
            }
            NoDeploymentReason::LoopGuard { started } => write!(
                f,
                "required deployment {started} already started on this machine through PXE; \
                 an operator must clear it"
            ),
            NoDeploymentReason::RerunBlocked => {
                f.write_str("the rerun behaviour of the required deployments holds them back")
            }
            NoDeploymentReason::OnlyHidden => {
                f.write_str("only hidden deployments target this machine and none was named")
            }
            NoDeploymentReason::NoBootableCandidate => {
                f.write_str("no deployment's boot image starts on this firmware")
            }
            NoDeploymentReason::UnresolvedReference => {
                f.write_str("the deployments for this machine refer to missing objects")
            }
            NoDeploymentReason::PreProductionOnly => f.write_str(
                "the deployments for this machine boot a pre-production boot image, and this \
                 machine is outside the pre-production collection",
            ),
            NoDeploymentReason::OutsideSchedule => {
                f.write_str("no deployment for this client is inside its schedule")
            }
            NoDeploymentReason::NoCandidate => f.write_str("nothing is deployed to this machine"),
        }
    }
}

/// What the machine is told to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Run this deployment with no menu and no key press (rules 3 and 5).
    RunUnattended {
        /// The deployment to run.
        deployment: DeploymentId,
        /// Preferred id or required.
        reason: RunReason,
    },
    /// Show these deployments, best first; after the timeout, `default` (rule 6). Never holds
    /// a hidden deployment (rule 4).
    Menu {
        /// The visible available candidates, best first.
        entries: Vec<DeploymentId>,
        /// What happens after the timeout.
        default: MenuDefault,
    },
    /// Offer nothing: PXE sends no boot offer, a boot environment is told plainly (rule 8).
    NoDeployment {
        /// Why, for the log and the boot environment.
        reason: NoDeploymentReason,
    },
}

/// How one deployment of the catalog fared, for `explain` (rule 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The deployment evaluated.
    pub deployment_id: DeploymentId,
    /// True when the deployment is what runs or is one of the menu entries.
    pub admitted: bool,
    /// The rule that settled it.
    pub rule: Rule,
    /// One sentence for an operator, in terms of this machine and this deployment.
    pub explanation: String,
}

/// Something an operator should know about the request (a status message), such as a
/// preferred deployment id that was ignored (rule 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionWarning {
    /// The rule that raised it.
    pub rule: Rule,
    /// The status message text.
    pub message: String,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The context decided for.
    pub context: Context,
    /// What the machine said about itself.
    pub machine: MachineIdentity,
    /// The device it matched; `None` for an unknown computer.
    pub device: Option<String>,
    /// The raw option 93 value, when given.
    pub arch: Option<u16>,
    /// What the machine is told to do.
    pub action: Action,
    /// A PXE password must be proved before the deployment starts (rule 9): the server has
    /// one, the context is PXE, and something is offered.
    pub password_required: bool,
    /// One per deployment of the catalog, highest deployment id first. A decision on an
    /// indexed catalog (the boot path's) leaves out the deployments whose collection does not
    /// hold the machine: rule 1 excludes them, and they change nothing.
    pub evaluations: Vec<Evaluation>,
    /// Status messages to write, in the order they arose.
    pub warnings: Vec<DecisionWarning>,
    /// Why the machine's SMBIOS UUID was not used to identify it (a placeholder, ignored by
    /// the site, or seen with more than one MAC); it is then known by its MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid_not_used: Option<UuidDistrust>,
    /// How the caller identified the machine (such as the UUID a MAC was last seen with),
    /// for `explain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_notes: Vec<String>,
    /// The 0-based step the deployment that runs starts at: after a restart in the middle of
    /// its task sequence, the step after the `reboot` step (rule 7); else 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resume_at: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Decision {
    /// The key status messages about this machine are kept under: its SMBIOS UUID, else its
    /// MAC; the MAC when the UUID does not tell machines apart, so two machines sharing one
    /// UUID are never counted as one.
    pub fn identity_key(&self) -> Option<crate::catalog::IdentityKey> {
        let known_as = MachineIdentity {
            uuid: self.machine.uuid.filter(|_| self.uuid_not_used.is_none()),
            ..self.machine
        };
        known_as.key()
    }

    /// The deployment that runs unattended, if any.
    pub fn unattended(&self) -> Option<DeploymentId> {
        match &self.action {
            Action::RunUnattended { deployment, .. } => Some(*deployment),
            _ => None,
        }
    }

    /// The menu entries, empty unless the action is a menu.
    pub fn menu(&self) -> &[DeploymentId] {
        match &self.action {
            Action::Menu { entries, .. } => entries,
            _ => &[],
        }
    }

    /// The evaluation of one deployment.
    pub fn evaluation(&self, id: &DeploymentId) -> Option<&Evaluation> {
        self.evaluations.iter().find(|e| e.deployment_id == *id)
    }

    /// The deployments that target this machine but whose requirements it does not meet: its
    /// firmware (rule 5a), the loop guard or the rerun behaviour (rule 7). Monitoring reports
    /// the machine as Non-compliant for them, with this reason (docs/status.md).
    pub fn unmet_requirements(&self) -> impl Iterator<Item = &Evaluation> {
        self.evaluations.iter().filter(|e| {
            !e.admitted
                && matches!(
                    e.rule,
                    Rule::Rule5aArchitecture | Rule::Rule7LoopGuard | Rule::Rule7Rerun
                )
        })
    }
}

/// How well a boot image fits the firmware (rule 5a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    /// Starts, but another architecture would be the firmware's own (x64 on BIOS).
    Compatible,
    /// The firmware's own architecture.
    Exact,
    /// No firmware architecture was given, so none was checked; ranks with exact.
    Unchecked,
}

impl Fit {
    fn rank(self) -> u8 {
        match self {
            Fit::Compatible => 0,
            Fit::Exact | Fit::Unchecked => 1,
        }
    }
}

/// Rule 5a: whether a boot image of `image` architecture starts on `firmware`.
fn fit(firmware: ClientArch, image: ImageArch, cpu_64bit: bool) -> Option<Fit> {
    use ClientArch as F;
    match (firmware, image) {
        (F::BiosX86, ImageArch::X86) => Some(Fit::Exact),
        (F::BiosX86, ImageArch::X64) if cpu_64bit => Some(Fit::Compatible),
        (F::EfiIa32, ImageArch::X86) => Some(Fit::Exact),
        (F::EfiX64 | F::HttpX64, ImageArch::X64) => Some(Fit::Exact),
        (F::EfiArm64 | F::HttpArm64, ImageArch::Arm64) => Some(Fit::Exact),
        _ => None,
    }
}

/// What a firmware needs, for explanations.
fn firmware_needs(firmware: ClientArch, cpu_64bit: bool) -> &'static str {
    match firmware {
        ClientArch::BiosX86 if cpu_64bit => "x86 or x64",
        ClientArch::BiosX86 => "x86 (the CPU is not 64-bit)",
        ClientArch::EfiIa32 => "x86",
        ClientArch::EfiX64 | ClientArch::HttpX64 => "x64",
        ClientArch::EfiArm64 | ClientArch::HttpArm64 => "arm64",
        ClientArch::EfiArm32 => "arm32, which no boot image provides",
    }
}

/// The firmware as far as rule 5a is concerned.
#[derive(Clone, Copy)]
enum Firmware {
    NotGiven,
    Unsupported(u16),
    Known(ClientArch),
}

/// A deployment after the per-deployment rules (1, 2, 5a, 7), before the choice.
enum Screen {
    /// Not a candidate.
    Excluded { rule: Rule, why: String },
    /// A candidate whose required run rule 7 holds back.
    Blocked { rule: Rule, why: String },
    /// A candidate. `runs`: required and due, so it runs by itself when it wins. `resume`:
    /// the step a run that restarted the machine mid-sequence continues at.
    Candidate {
        fit: Fit,
        runs: bool,
        hidden: bool,
        resume: Option<usize>,
        note: String,
    },
}

struct Screened<'a> {
    deployment: &'a Deployment,
    screen: Screen,
}

/// Everything [`decide`] reads about the request besides the catalog.
struct Request<'a> {
    catalog: CatalogView<'a>,
    machine: &'a MachineIdentity,
    device: Option<&'a Device>,
    firmware: Firmware,
    cpu_64bit: bool,
    context: Context,
    history: &'a History,
    guard: Option<history::Guard>,
    /// The machine is in the pre-production collection (docs/status.md).
    pre_production: bool,
}

/// Decides what a booting machine (or a running client) gets, by docs/selection-rules.md.
///
/// - `machine`: its MAC and SMBIOS UUID; matched by UUID first, then MAC; no match is an
///   unknown computer (docs/site-file.md).
/// - `arch`: the raw option 93 value; `None` when the requester did not say, in which case
///   rule 5a is not applied. A value netdeploy does not boot makes every deployment fail 5a.
/// - `cpu_64bit`: a BIOS client may start an x64 boot image (rule 5a).
/// - `preferred`: `SMSTSPreferredAdvertID` from the media or the request (rule 3).
/// - `history`: the loop guard and last attempts of rule 7.
///
/// The result depends only on these values: not on a clock (a client's `now` is in the
/// context), not on the order of deployments in the catalog, and in PXE and media context not
/// on any schedule time (rule 2).
// The arguments are the independent inputs the selection rules name; bundling them would only move the
// list into a struct every caller fills the same way.
#[allow(clippy::too_many_arguments)]
pub fn decide<'c>(
    catalog: impl Into<CatalogView<'c>>,
    machine: &MachineIdentity,
    arch: Option<u16>,
    cpu_64bit: bool,
    context: Context,
    preferred: Option<&str>,
    history: &History,
    settings: &ServerSettings,
) -> Decision {
    // Section 10: a UUID that does not tell machines apart is left out, so the machine is known
    // by its MAC and never merged with another that sends the same UUID.
    let known_as = history.uuid_policy().effective(machine);
    let distrusted = machine
        .uuid
        .and_then(|u| history.uuid_policy().distrust(&u).map(|why| (u, why)));
    let catalog: CatalogView<'c> = catalog.into();
    let device = catalog.match_device(&known_as);
    let named = preferred.and_then(|p| p.trim().parse::<DeploymentId>().ok());
    let mut deployments: Vec<&Deployment> = catalog.deployments_for(device, named);
    // Highest id first: the order in which rule 5 ranks them and explain lists them.
    deployments.sort_by_key(|d| std::cmp::Reverse(d.id));

    let mut decision = Decision {
        context,
        machine: *machine,
        device: device.map(|d| d.name.clone()),
        arch,
        action: Action::NoDeployment {
            reason: NoDeploymentReason::NoCandidate,
        },
        password_required: false,
        evaluations: Vec::with_capacity(deployments.len()),
        warnings: Vec::new(),
        uuid_not_used: distrusted.clone().map(|(_, why)| why),
        identity_notes: Vec::new(),
        resume_at: 0,
    };
    if let Some((u, why @ UuidDistrust::Duplicate { .. })) = &distrusted {
        decision.warnings.push(DecisionWarning {
            rule: Rule::Identity,
            message: format!(
                "SMBIOS UUID {u} is not used to identify this machine: {why}; it is known by \
                 its MAC"
            ),
        });
    }

    // Rule 9: an unknown computer on a server that does not serve them is not looked at
    // further, not even for a preferred id.
    if device.is_none() && !settings.unknown_computers_enabled {
        for d in &deployments {
            decision.evaluations.push(Evaluation {
                deployment_id: d.id,
                admitted: false,
                rule: Rule::Rule9UnknownDisabled,
                explanation: "this machine matches no device and unknown computers are \
                              switched off on this server"
                    .into(),
            });
        }
        if let Some(p) = preferred {
            decision.warnings.push(DecisionWarning {
                rule: Rule::Rule9UnknownDisabled,
                message: format!(
                    "preferred deployment {p:?} ignored: unknown computers are switched off"
                ),
            });
        }
        decision.action = Action::NoDeployment {
            reason: NoDeploymentReason::UnknownComputersDisabled,
        };
        return decision;
    }

    let firmware = match arch {
        None => Firmware::NotGiven,
        Some(v) => match ClientArch::from_option93(v) {
            Some(a) => Firmware::Known(a),
            None => Firmware::Unsupported(v),
        },
    };
    let request = Request {
        catalog,
        machine: &known_as,
        device,
        firmware,
        cpu_64bit,
        context,
        history,
        // Rule 7: the loop guard is a PXE matter; media and clients follow rerun behaviour.
        guard: match context {
            Context::Pxe => history.guard_for(catalog, &known_as, device),
            _ => None,
        },
        pre_production: settings
            .pre_production_collection
            .as_deref()
            .and_then(|c| catalog.collection(c))
            .is_some_and(|c| catalog.holds(c, device)),
    };
    let screened: Vec<Screened> = deployments
        .iter()
        .map(|d| Screened {
            deployment: d,
            screen: screen(&request, d),
        })
        .collect();

    let preferred_hit = preferred.and_then(|p| preferred_candidate(p, &screened, &mut decision));
    decision.action = choose(preferred_hit, &screened, &request);
    if let Action::RunUnattended {
        deployment,
        reason: RunReason::Continuing,
    } = &decision.action
    {
        decision.resume_at = screened
            .iter()
            .find(|s| s.deployment.id == *deployment)
            .and_then(|s| match s.screen {
                Screen::Candidate { resume, .. } => resume,
                _ => None,
            })
            .unwrap_or(0);
    }
    decision.evaluations = screened
        .iter()
        .map(|s| evaluate(s, &decision.action, &screened))
        .collect();
    // A run continuing after a restart in its task sequence was let through when it started:
    // asking again would stop an unattended sequence at its reboot.
    decision.password_required = settings.pxe_password_set
        && context == Context::Pxe
        && !matches!(
            decision.action,
            Action::NoDeployment { .. }
                | Action::RunUnattended {
                    reason: RunReason::Continuing,
                    ..
                }
        );
    decision
}

/// Rules 1, 2, 5a and 7 for one deployment.
fn screen(req: &Request, d: &Deployment) -> Screen {
    let excluded = |rule: Rule, why: String| Screen::Excluded { rule, why };
    let catalog = req.catalog;

    // Rule 1: the collection holds the machine ...
    let Some(collection) = catalog.collection(&d.collection) else {
        return excluded(
            Rule::UnresolvedReference,
            format!("collection {} does not exist", d.collection),
        );
    };
    if !catalog.holds(collection, req.device) {
        let who = match req.device {
            Some(dev) => format!("device {}", dev.name),
            None => "unknown computers".to_string(),
        };
        return excluded(
            Rule::Rule1Candidates,
            format!(
                "collection {} ({}) does not hold {who}",
                collection.id, collection.name
            ),
        );
    }
    // ... and the deployment is available to this context.
    if req.context.is_boot_environment() {
        if !d.available_to.reaches_media_pxe() {
            return excluded(
                Rule::Rule1Candidates,
                format!("available to clients only: never reaches {}", req.context),
            );
        }
    } else if !d.available_to.reaches_clients() {
        return excluded(
            Rule::Rule1Candidates,
            format!(
                "available to {} only: not offered to running clients",
                d.available_to
            ),
        );
    }

    // Rule 2: only running clients evaluate the schedule.
    if let Context::Client { now } = req.context {
        if let Some(at) = d.schedule.available_at.filter(|&at| now < at) {
            return excluded(
                Rule::Rule2NoSchedule,
                format!("not available before {at} (client time {now})"),
            );
        }
        if let Some(at) = d.schedule.expires_at.filter(|&at| now >= at) {
            return excluded(
                Rule::Rule2NoSchedule,
                format!("expired at {at} (client time {now})"),
            );
        }
    }

    let Some(ts) = catalog.task_sequence(&d.task_sequence) else {
        return excluded(
            Rule::UnresolvedReference,
            format!("task sequence {} does not exist", d.task_sequence),
        );
    };

    // Rule 5a: in a boot environment the task sequence's boot image must start on this
    // firmware. A running client reboots into whatever image the task sequence names.
    let (fit, fit_note) = if req.context.is_boot_environment() {
        let Some(image_id) = ts.boot_image.as_deref() else {
            return excluded(
                Rule::UnresolvedReference,
                format!(
                    "task sequence {} has no boot image, so {} cannot start it",
                    ts.id, req.context
                ),
            );
        };
        let Some(image) = catalog.boot_image(image_id) else {
            return excluded(
                Rule::UnresolvedReference,
                format!(
                    "boot image {image_id} of task sequence {} does not exist",
                    ts.id
                ),
            );
        };
        // Section 8: a pre-production image is served to the pre-production collection only,
        // so for anyone else the deployment is no candidate and rule 8 makes no offer, rather
        // than an offer whose script then has nothing to start.
        if image.pre_production && !req.pre_production {
            return excluded(
                Rule::PreProduction,
                format!(
                    "boot image {} is pre-production and this machine is not in the \
                     pre-production collection",
                    image.id
                ),
            );
        }
        match architecture(req, image) {
            Ok(fit) => fit,
            Err(why) => return excluded(Rule::Rule5aArchitecture, why),
        }
    } else {
        (Fit::Unchecked, String::new())
    };

    let hidden = d.available_to.is_hidden();
    let candidate = |runs: bool, note: String| Screen::Candidate {
        fit,
        runs,
        hidden,
        resume: None,
        note: if fit_note.is_empty() {
            note
        } else {
            format!("{note}; {fit_note}")
        },
    };
    // Rule 7: a run that restarted the machine in the middle of its task sequence continues
    // on the machine's next boot, available or required: neither the loop guard its start
    // set nor the rerun behaviour holds it back. Only its end (succeeded or failed) ends it.
    if req.context.is_boot_environment() {
        if let Some(step) = req
            .history
            .resume_for(req.catalog, req.machine, req.device, &d.id)
        {
            let mut note = format!(
                "continuing after a restart: the task sequence goes on at step {}",
                step + 1
            );
            if !fit_note.is_empty() {
                note = format!("{note}; {fit_note}");
            }
            return Screen::Candidate {
                fit,
                runs: true,
                hidden,
                resume: Some(step),
                note,
            };
        }
    }
    if d.purpose == Purpose::Available {
        return candidate(false, "available".into());
    }

    // Rule 7 for required deployments.
    let last = req
        .history
        .last_attempt_for(req.catalog, req.machine, req.device, &d.id);
    match req.context {
        Context::Pxe => {
            if let Some(g) = req.guard {
                return Screen::Blocked {
                    rule: Rule::Rule7LoopGuard,
                    why: format!(
                        "required deployment {} already started on this machine through PXE \
                         (recorded as {}); PXE starts no required deployment on it again \
                         until an operator clears the guard",
                        g.deployment,
                        g.machine.record()
                    ),
                };
            }
            candidate(true, "required".into())
        }
        Context::Media => {
            if let Some(why) = rerun_holds_back(d.schedule.rerun, last) {
                return Screen::Blocked {
                    rule: Rule::Rule7Rerun,
                    why,
                };
            }
            candidate(true, rerun_note("required", d.schedule.rerun, last))
        }
        Context::Client { now } => {
            if let Some(why) = rerun_holds_back(d.schedule.rerun, last) {
                return Screen::Blocked {
                    rule: Rule::Rule7Rerun,
                    why,
                };
            }
            // A deadline that has passed and was not yet acted on makes it run; before that
            // a user may still start it, like an available one. No assignment means "as soon
            // as it is available".
            let deadlines: Vec<i64> = if d.schedule.assignments.is_empty() {
                vec![d.schedule.available_at.unwrap_or(i64::MIN)]
            } else {
                d.schedule.assignments.clone()
            };
            let due = deadlines
                .iter()
                .any(|&t| t <= now && last.is_none_or(|a| t > a.at));
            if due {
                candidate(
                    true,
                    rerun_note("required, deadline passed", d.schedule.rerun, last),
                )
            } else {
                candidate(
                    false,
                    "required, but no deadline is due yet, so it is offered like an available one"
                        .into(),
                )
            }
        }
    }
}

/// Rule 5a for one boot image: the fit and a note, or why it cannot start.
fn architecture(req: &Request, image: &BootImage) -> Result<(Fit, String), String> {
    match req.firmware {
        Firmware::NotGiven => Ok((
            Fit::Unchecked,
            format!(
                "boot image {} ({}); firmware architecture not given, not checked",
                image.id, image.arch
            ),
        )),
        Firmware::Unsupported(v) => Err(format!(
            "option 93 value {v} is not a firmware netdeploy boots, so boot image {} ({}) \
             cannot start",
            image.id, image.arch
        )),
        Firmware::Known(fw) => match fit(fw, image.arch, req.cpu_64bit) {
            Some(Fit::Compatible) => Ok((
                Fit::Compatible,
                format!(
                    "boot image {} ({}) is compatible with {fw} firmware on a 64-bit CPU",
                    image.id, image.arch
                ),
            )),
            Some(f) => Ok((
                f,
                format!(
                    "boot image {} ({}) fits {fw} firmware exactly",
                    image.id, image.arch
                ),
            )),
            None => Err(format!(
                "boot image {} is {}, but {fw} firmware needs {}",
                image.id,
                image.arch,
                firmware_needs(fw, req.cpu_64bit)
            )),
        },
    }
}

/// Rule 7 for media and clients: why the rerun behaviour holds a required deployment back.
fn rerun_holds_back(rerun: Rerun, last: Option<Attempt>) -> Option<String> {
    let last = last?;
    let allowed = match rerun {
        Rerun::Never => false,
        Rerun::Always => true,
        // An interrupted run did not succeed: it may run again, as a failed one may.
        Rerun::IfFailed => last.outcome != Outcome::Succeeded,
        Rerun::IfSucceeded => last.outcome == Outcome::Succeeded,
    };
    (!allowed).then(|| {
        format!(
            "rerun behaviour is {rerun} and the last attempt {}",
            ended(last.outcome)
        )
    })
}

/// How an attempt ended, as a sentence ends.
fn ended(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Interrupted => "started and never ended (interrupted)",
    }
}

fn rerun_note(what: &str, rerun: Rerun, last: Option<Attempt>) -> String {
    match last {
        None => format!("{what}; not attempted on this machine before"),
        Some(a) => format!(
            "{what}; rerun behaviour {rerun} allows another run after the last attempt ({})",
            ended(a.outcome)
        ),
    }
}

/// Rule 3: the preferred id, when it names a candidate; otherwise a warning and `None`.
fn preferred_candidate(
    preferred: &str,
    screened: &[Screened],
    decision: &mut Decision,
) -> Option<DeploymentId> {
    let mut warn = |rule: Rule, message: String| {
        decision.warnings.push(DecisionWarning { rule, message });
    };
    let Ok(id) = preferred.trim().parse::<DeploymentId>() else {
        warn(
            Rule::Rule3Preferred,
            format!(
                "preferred deployment id {preferred:?} is not a deployment id; ignored, \
                 rules 4 to 7 decide"
            ),
        );
        return None;
    };
    let Some(s) = screened.iter().find(|s| s.deployment.id == id) else {
        warn(
            Rule::Rule3Preferred,
            format!("preferred deployment {id} does not exist; ignored, rules 4 to 7 decide"),
        );
        return None;
    };
    match &s.screen {
        Screen::Candidate { .. } => Some(id),
        Screen::Excluded { rule, why } | Screen::Blocked { rule, why } => {
            warn(
                Rule::Rule3Preferred,
                format!(
                    "preferred deployment {id} is not a candidate for this machine ({why}; {}); \
                     ignored, rules 4 to 7 decide",
                    rule.cite()
                ),
            );
            None
        }
    }
}

/// The order of rule 5 within one purpose: an exact architecture fit first (rule 5a), then
/// the highest deployment id.
fn rank(s: &Screened) -> (u8, DeploymentId) {
    let fit = match s.screen {
        Screen::Candidate { fit, .. } => fit.rank(),
        _ => 0,
    };
    (fit, s.deployment.id)
}

/// Rules 3, 5, 6, 7 and 8: the action. A run continuing after a restart comes first: the
/// machine is in the middle of it.
fn choose(preferred: Option<DeploymentId>, screened: &[Screened], req: &Request) -> Action {
    if let Some(s) = screened
        .iter()
        .filter(|s| {
            matches!(
                s.screen,
                Screen::Candidate {
                    resume: Some(_),
                    ..
                }
            )
        })
        .max_by_key(|s| rank(s))
    {
        return Action::RunUnattended {
            deployment: s.deployment.id,
            reason: RunReason::Continuing,
        };
    }
    if let Some(deployment) = preferred {
        return Action::RunUnattended {
            deployment,
            reason: RunReason::Preferred,
        };
    }
    let required = screened
        .iter()
        .filter(|s| matches!(s.screen, Screen::Candidate { runs: true, .. }))
        .max_by_key(|s| rank(s));
    if let Some(best) = required {
        return Action::RunUnattended {
            deployment: best.deployment.id,
            reason: RunReason::Required,
        };
    }
    let mut listed: Vec<&Screened> = screened
        .iter()
        .filter(|s| {
            matches!(
                s.screen,
                Screen::Candidate {
                    runs: false,
                    hidden: false,
                    ..
                }
            )
        })
        .collect();
    if !listed.is_empty() {
        listed.sort_by_key(|s| std::cmp::Reverse(rank(s)));
        return Action::Menu {
            entries: listed.iter().map(|s| s.deployment.id).collect(),
            default: MenuDefault::LocalDisk,
        };
    }
    let any = |f: &dyn Fn(&Screen) -> bool| screened.iter().any(|s| f(&s.screen));
    let reason = if let (
        true,
        Some(history::Guard {
            deployment: started,
            ..
        }),
    ) = (
        any(&|s| {
            matches!(
                s,
                Screen::Blocked {
                    rule: Rule::Rule7LoopGuard,
                    ..
                }
            )
        }),
        req.guard,
    ) {
        NoDeploymentReason::LoopGuard { started }
    } else if any(&|s| matches!(s, Screen::Blocked { .. })) {
        NoDeploymentReason::RerunBlocked
    } else if any(&|s| matches!(s, Screen::Candidate { .. })) {
        NoDeploymentReason::OnlyHidden
    } else if any(&|s| {
        matches!(
            s,
            Screen::Excluded {
                rule: Rule::Rule5aArchitecture,
                ..
            }
        )
    }) {
        NoDeploymentReason::NoBootableCandidate
    } else if any(&|s| {
        matches!(
            s,
            Screen::Excluded {
                rule: Rule::PreProduction,
                ..
            }
        )
    }) {
        NoDeploymentReason::PreProductionOnly
    } else if any(&|s| {
        matches!(
            s,
            Screen::Excluded {
                rule: Rule::UnresolvedReference,
                ..
            }
        )
    }) {
        NoDeploymentReason::UnresolvedReference
    } else if any(&|s| {
        matches!(
            s,
            Screen::Excluded {
                rule: Rule::Rule2NoSchedule,
                ..
            }
        )
    }) {
        NoDeploymentReason::OutsideSchedule
    } else {
        NoDeploymentReason::NoCandidate
    };
    Action::NoDeployment { reason }
}

/// The evaluation of one deployment, given the action chosen.
fn evaluate(s: &Screened, action: &Action, all: &[Screened]) -> Evaluation {
    let id = s.deployment.id;
    let verdict = |admitted: bool, rule: Rule, explanation: String| Evaluation {
        deployment_id: id,
        admitted,
        rule,
        explanation,
    };
    let (fit, runs, hidden, note) = match &s.screen {
        Screen::Excluded { rule, why } | Screen::Blocked { rule, why } => {
            return verdict(false, *rule, why.clone());
        }
        Screen::Candidate {
            fit,
            runs,
            hidden,
            note,
            ..
        } => (*fit, *runs, *hidden, note),
    };
    match action {
        Action::RunUnattended {
            deployment,
            reason: RunReason::Continuing,
        } => {
            if *deployment == id {
                verdict(true, Rule::Rule7Resume, format!("{note}: runs unattended"))
            } else {
                verdict(
                    false,
                    Rule::Rule7Resume,
                    format!(
                        "{note}, but deployment {deployment} is continuing after a restart \
                         and runs first"
                    ),
                )
            }
        }
        Action::RunUnattended {
            deployment,
            reason: RunReason::Preferred,
        } => {
            if *deployment == id {
                let hidden = if hidden {
                    " (hidden: it runs only because it is named)"
                } else {
                    ""
                };
                verdict(
                    true,
                    Rule::Rule3Preferred,
                    format!(
                        "named by the preferred deployment id{hidden}: runs unattended, no \
                         menu, no key press; {note}"
                    ),
                )
            } else {
                verdict(
                    false,
                    Rule::Rule3Preferred,
                    format!("{note}, but the preferred deployment {deployment} runs instead"),
                )
            }
        }
        Action::RunUnattended {
            deployment,
            reason: RunReason::Required,
        } => {
            if *deployment == id {
                let others = all
                    .iter()
                    .filter(|o| {
                        o.deployment.id != id
                            && matches!(o.screen, Screen::Candidate { runs: true, .. })
                    })
                    .count();
                let among = match others {
                    0 => "the only required candidate".to_string(),
                    n => format!("first of {} required candidates", n + 1),
                };
                verdict(
                    true,
                    Rule::Rule5Required,
                    format!("{note}: runs without a key press, {among}"),
                )
            } else if runs {
                let winner = all.iter().find(|o| o.deployment.id == *deployment);
                let why = match winner.map(rank) {
                    Some((w, _)) if w > fit.rank() => {
                        "its boot image fits the firmware exactly (rule 5a)"
                    }
                    _ => "it has the higher deployment id",
                };
                verdict(
                    false,
                    Rule::Rule5Required,
                    format!("{note}, but required deployment {deployment} wins: {why}"),
                )
            } else {
                verdict(
                    false,
                    Rule::Rule5Required,
                    format!(
                        "{note}, but required deployment {deployment} runs: required comes \
                         before available"
                    ),
                )
            }
        }
        Action::Menu { entries, .. } => match entries.iter().position(|e| *e == id) {
            Some(i) => verdict(
                true,
                Rule::Rule6Available,
                format!(
                    "{note}: menu entry {} of {}; the default after the timeout is the local disk",
                    i + 1,
                    entries.len()
                ),
            ),
            None => hidden_verdict(id, note),
        },
        Action::NoDeployment { .. } => hidden_verdict(id, note),
    }
}

/// Rule 4: a hidden candidate that did not run is never listed.
fn hidden_verdict(id: DeploymentId, note: &str) -> Evaluation {
    Evaluation {
        deployment_id: id,
        admitted: false,
        rule: Rule::Rule4Hidden,
        explanation: format!(
            "{note}; hidden (media_pxe_hidden): never listed, runs only when a preferred \
             deployment id names it"
        ),
    }
}
