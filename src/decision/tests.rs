//! The rules of docs/selection-rules.md, one table per rule, and properties of [`decide`] as a whole.

use proptest::prelude::*;
use proptest::sample::subsequence;

use super::*;
use crate::catalog::IdentityKey;
use crate::catalog::{
    AvailableTo::{self, *},
    BootImage, BootImageKind, Catalog, Collection, CollectionKind, Deployment, DeploymentOption,
    Device, ImageArch,
    Purpose::{self, *},
    Rerun, Schedule, Step, StepAction, TaskSequence,
};
use netdeploy_wire::{Mac, SmbiosUuid};

const MAC_A: Mac = Mac([0x52, 0x54, 0, 0, 0, 0x0a]);
const MAC_B: Mac = Mac([0x52, 0x54, 0, 0, 0, 0x0b]);
const MAC_X: Mac = Mac([0x52, 0x54, 0, 0, 0, 0xee]);
const MAC_Y: Mac = Mac([0x52, 0x54, 0, 0, 0, 0xef]);
const UUID_A: SmbiosUuid = SmbiosUuid([0xaa; 16]);
const UUID_X: SmbiosUuid = SmbiosUuid([0xee; 16]);

/// Custom collection holding `lab-a` only.
const LAB: &str = "LAB00100";
const ALL: &str = "SMS00001";
const UNKNOWN: &str = "SMS000US";

fn id(s: &str) -> DeploymentId {
    s.parse().unwrap()
}

/// `lab-a` has a UUID and a MAC and is in [`LAB`]; `lab-b` has only a MAC.
fn machine_a() -> MachineIdentity {
    MachineIdentity {
        mac: Some(MAC_A),
        uuid: Some(UUID_A),
    }
}

fn machine_b() -> MachineIdentity {
    MachineIdentity {
        mac: Some(MAC_B),
        uuid: None,
    }
}

fn stranger() -> MachineIdentity {
    MachineIdentity {
        mac: Some(MAC_X),
        uuid: Some(UUID_X),
    }
}

fn device(name: &str, mac: Mac, uuid: Option<SmbiosUuid>) -> Device {
    Device {
        name: name.into(),
        macs: vec![mac],
        uuid,
        server: false,
        site_system: false,
    }
}

fn task_sequence(id: &str, boot_image: Option<&str>) -> TaskSequence {
    TaskSequence {
        id: id.into(),
        name: format!("{id} task sequence"),
        boot_image: boot_image.map(Into::into),
        steps: vec![Step {
            name: "apply".into(),
            action: StepAction::ApplyImage,
            package: None,
            command: None,
            file: None,
            target: None,
            variable: None,
            value: None,
            secret: false,
            sealed: None,
            disk: None,
            layout: None,
            partition: None,
            filesystem: None,
        }],
        packages: vec![],
    }
}

fn boot_image(id: &str, arch: ImageArch) -> BootImage {
    BootImage {
        id: id.into(),
        arch,
        kind: BootImageKind::Linux,
        files: vec![],
        cmdline: String::new(),
        pre_production: false,
        replaces: None,
    }
}

fn base_catalog() -> Catalog {
    Catalog {
        devices: vec![
            device("lab-a", MAC_A, Some(UUID_A)),
            device("lab-b", MAC_B, None),
        ],
        collections: vec![
            Collection {
                id: ALL.into(),
                name: "All Systems".into(),
                kind: CollectionKind::AllSystems,
            },
            Collection {
                id: UNKNOWN.into(),
                name: "Unknown Computers".into(),
                kind: CollectionKind::UnknownComputers,
            },
            Collection {
                id: LAB.into(),
                name: "lab".into(),
                kind: CollectionKind::Custom {
                    members: vec!["lab-a".into()],
                },
            },
        ],
        packages: vec![],
        boot_images: vec![
            boot_image("bi-x86", ImageArch::X86),
            boot_image("bi-x64", ImageArch::X64),
            boot_image("bi-arm64", ImageArch::Arm64),
        ],
        task_sequences: vec![
            task_sequence("ts-x86", Some("bi-x86")),
            task_sequence("ts-x64", Some("bi-x64")),
            task_sequence("ts-arm64", Some("bi-arm64")),
            task_sequence("ts-none", None),
            task_sequence("ts-broken", Some("bi-missing")),
        ],
        deployments: vec![],
    }
}

/// A deployment of `ts-x64` to [`LAB`], unscheduled.
fn dep(deployment_id: &str, purpose: Purpose, available_to: AvailableTo) -> Deployment {
    Deployment {
        id: id(deployment_id),
        task_sequence: "ts-x64".into(),
        collection: LAB.into(),
        purpose,
        available_to,
        schedule: Schedule::default(),
        option: DeploymentOption::DownloadOnDemand,
        multicast: false,
        wake_on_lan: false,
        comments: String::new(),
        high_risk_accepted: false,
        software_installation: false,
        pre_download: false,
        created_at: 0,
    }
}

trait Adjust {
    fn to(self, collection: &str) -> Self;
    fn ts(self, task_sequence: &str) -> Self;
    fn schedule(self, schedule: Schedule) -> Self;
    fn rerun(self, rerun: Rerun) -> Self;
}

impl Adjust for Deployment {
    fn to(mut self, collection: &str) -> Self {
        self.collection = collection.into();
        self
    }
    fn ts(mut self, task_sequence: &str) -> Self {
        self.task_sequence = task_sequence.into();
        self
    }
    fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }
    fn rerun(mut self, rerun: Rerun) -> Self {
        self.schedule.rerun = rerun;
        self
    }
}

fn expired() -> Schedule {
    Schedule {
        available_at: Some(100),
        expires_at: Some(200),
        ..Schedule::default()
    }
}

fn not_yet_available() -> Schedule {
    Schedule {
        available_at: Some(5000),
        ..Schedule::default()
    }
}

fn deadline(at: i64) -> Schedule {
    Schedule {
        assignments: vec![at],
        ..Schedule::default()
    }
}

/// The request besides the catalog. Defaults: `lab-a` booting OVMF (option 93 = 7) through
/// PXE, no preferred id, no history, unknown computers served, no PXE password.
#[derive(Debug, Clone)]
struct Req {
    machine: MachineIdentity,
    arch: Option<u16>,
    cpu_64bit: bool,
    context: Context,
    preferred: Option<String>,
    history: History,
    settings: ServerSettings,
}

impl Default for Req {
    fn default() -> Req {
        Req {
            machine: machine_a(),
            arch: Some(7),
            cpu_64bit: true,
            context: Context::Pxe,
            preferred: None,
            history: History::new(),
            settings: ServerSettings {
                unknown_computers_enabled: true,
                pxe_password_set: false,
                pre_production_collection: None,
            },
        }
    }
}

impl Req {
    fn decide(&self, catalog: &Catalog) -> Decision {
        self.decide_on(catalog)
    }

    fn decide_on<'c>(&self, catalog: impl Into<CatalogView<'c>>) -> Decision {
        decide(
            catalog,
            &self.machine,
            self.arch,
            self.cpu_64bit,
            self.context,
            self.preferred.as_deref(),
            &self.history,
            &self.settings,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Want {
    Runs(&'static str, RunReason),
    Menu(Vec<&'static str>),
    Nothing(NoDeploymentReason),
}

struct Case {
    name: &'static str,
    deployments: Vec<Deployment>,
    req: Req,
    want: Want,
    rules: Vec<(&'static str, bool, Rule)>,
    warnings: Vec<Rule>,
}

fn case(name: &'static str, deployments: Vec<Deployment>, want: Want) -> Case {
    Case {
        name,
        deployments,
        req: Req::default(),
        want,
        rules: vec![],
        warnings: vec![],
    }
}

impl Case {
    fn with(mut self, adjust: impl FnOnce(&mut Req)) -> Case {
        adjust(&mut self.req);
        self
    }
    fn rule(mut self, deployment: &'static str, admitted: bool, rule: Rule) -> Case {
        self.rules.push((deployment, admitted, rule));
        self
    }
    fn warns(mut self, rule: Rule) -> Case {
        self.warnings.push(rule);
        self
    }
}

fn runs(deployment: &'static str) -> Want {
    Want::Runs(deployment, RunReason::Required)
}

fn runs_preferred(deployment: &'static str) -> Want {
    Want::Runs(deployment, RunReason::Preferred)
}

fn menu(entries: &[&'static str]) -> Want {
    Want::Menu(entries.to_vec())
}

fn nothing(reason: NoDeploymentReason) -> Want {
    Want::Nothing(reason)
}

fn run_table(cases: Vec<Case>) {
    for c in cases {
        let mut catalog = base_catalog();
        catalog.deployments = c.deployments;
        let decision = c.req.decide(&catalog);
        let report = explain_text(&decision);
        let got = match &decision.action {
            Action::RunUnattended { deployment, reason } => {
                Want::Runs(leak(deployment.to_string()), *reason)
            }
            Action::Menu { entries, default } => {
                assert_eq!(*default, MenuDefault::LocalDisk, "{}", c.name);
                Want::Menu(entries.iter().map(|e| leak(e.to_string())).collect())
            }
            Action::NoDeployment { reason } => Want::Nothing(*reason),
        };
        assert_eq!(got, c.want, "case {:?}\n{report}", c.name);
        assert_eq!(
            decision.evaluations.len(),
            catalog.deployments.len(),
            "case {:?}: one evaluation per deployment",
            c.name
        );
        for (deployment, admitted, rule) in &c.rules {
            let e = decision
                .evaluation(&id(deployment))
                .unwrap_or_else(|| panic!("case {:?}: no evaluation of {deployment}", c.name));
            assert_eq!(
                (e.admitted, e.rule),
                (*admitted, *rule),
                "case {:?}, {deployment}\n{report}",
                c.name
            );
        }
        let warned: Vec<Rule> = decision.warnings.iter().map(|w| w.rule).collect();
        assert_eq!(warned, c.warnings, "case {:?}: warnings\n{report}", c.name);
    }
}

/// Test-only: compare ids as the `&'static str` the tables are written with.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// Rule 1 ----------------------------------------------------------------------------------------

#[test]
fn candidates_are_deployments_to_collections_holding_the_machine() {
    run_table(vec![
        case(
            "member of a custom collection",
            vec![dep("LAB00001", Required, MediaPxe)],
            runs("LAB00001"),
        )
        .rule("LAB00001", true, Rule::Rule5Required),
        case(
            "not a member of the custom collection",
            vec![dep("LAB00001", Required, MediaPxe)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.machine = machine_b())
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "All Systems holds every known device",
            vec![dep("LAB00001", Required, MediaPxe).to(ALL)],
            runs("LAB00001"),
        )
        .with(|r| r.machine = machine_b()),
        case(
            "All Systems does not hold an unknown computer",
            vec![dep("LAB00001", Required, MediaPxe).to(ALL)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.machine = stranger())
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "Unknown Computers holds a machine matching no device",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            runs("LAB00001"),
        )
        .with(|r| r.machine = stranger()),
        case(
            "a machine that sends no identity is an unknown computer",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            runs("LAB00001"),
        )
        .with(|r| r.machine = MachineIdentity::default()),
        case(
            "Unknown Computers does not hold a known device",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "a collection that does not exist holds nothing",
            vec![dep("LAB00001", Required, MediaPxe).to("NOPE0001")],
            nothing(NoDeploymentReason::UnresolvedReference),
        )
        .rule("LAB00001", false, Rule::UnresolvedReference),
    ]);
}

#[test]
fn clients_deployment_never_reaches_pxe() {
    let client = Context::Client { now: 1000 };
    run_table(vec![
        case(
            "clients only, pxe",
            vec![dep("LAB00001", Required, Clients)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "clients only, media",
            vec![dep("LAB00001", Available, Clients)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.context = Context::Media)
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "clients only, preferred from media is still no candidate",
            vec![dep("LAB00001", Available, Clients)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| {
            r.context = Context::Media;
            r.preferred = Some("LAB00001".into());
        })
        .warns(Rule::Rule3Preferred),
        case(
            "clients only, running client",
            vec![dep("LAB00001", Required, Clients)],
            runs("LAB00001"),
        )
        .with(|r| r.context = client),
        case(
            "clients, media and pxe reaches pxe",
            vec![dep("LAB00001", Required, ClientsMediaPxe)],
            runs("LAB00001"),
        ),
        case(
            "clients, media and pxe reaches running clients",
            vec![dep("LAB00001", Required, ClientsMediaPxe)],
            runs("LAB00001"),
        )
        .with(|r| r.context = client),
        case(
            "media and pxe only does not reach running clients",
            vec![dep("LAB00001", Required, MediaPxe)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.context = client)
        .rule("LAB00001", false, Rule::Rule1Candidates),
        case(
            "hidden does not reach running clients",
            vec![dep("LAB00001", Required, MediaPxeHidden)],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.context = client),
    ]);
}

// Rule 2 ----------------------------------------------------------------------------------------

#[test]
fn expired_deployment_still_runs_from_pxe_and_media() {
    let client = |r: &mut Req| r.context = Context::Client { now: 1000 };
    let media = |r: &mut Req| r.context = Context::Media;
    run_table(vec![
        case(
            "expired, pxe",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(expired())],
            runs("LAB00001"),
        ),
        case(
            "expired, media",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(expired())],
            runs("LAB00001"),
        )
        .with(media),
        case(
            "expired, available, pxe menu",
            vec![dep("LAB00001", Available, MediaPxe).schedule(expired())],
            menu(&["LAB00001"]),
        ),
        case(
            "expired, client",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(expired())],
            nothing(NoDeploymentReason::OutsideSchedule),
        )
        .with(client)
        .rule("LAB00001", false, Rule::Rule2NoSchedule),
        case(
            "not yet available, pxe",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(not_yet_available())],
            runs("LAB00001"),
        ),
        case(
            "not yet available, media",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(not_yet_available())],
            runs("LAB00001"),
        )
        .with(media),
        case(
            "not yet available, client",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(not_yet_available())],
            nothing(NoDeploymentReason::OutsideSchedule),
        )
        .with(client)
        .rule("LAB00001", false, Rule::Rule2NoSchedule),
        case(
            "deadline in the future, pxe runs it now",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(deadline(5000))],
            runs("LAB00001"),
        ),
        case(
            "deadline in the future, client offers it like an available one",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(deadline(5000))],
            menu(&["LAB00001"]),
        )
        .with(client)
        .rule("LAB00001", true, Rule::Rule6Available),
        case(
            "deadline passed, client runs it",
            vec![dep("LAB00001", Required, ClientsMediaPxe).schedule(deadline(500))],
            runs("LAB00001"),
        )
        .with(client),
    ]);
}

#[test]
fn client_deadlines_follow_rerun_behaviour() {
    let attempt = |outcome, at| {
        let mut h = History::new();
        h.record_attempt(
            machine_a().key().unwrap(),
            id("LAB00001"),
            Attempt { outcome, at },
        );
        h
    };
    let client = Context::Client { now: 1000 };
    let two_deadlines = Schedule {
        assignments: vec![500, 900],
        ..Schedule::default()
    };
    run_table(vec![
        case(
            "always: a deadline after the last attempt runs it again",
            vec![dep("LAB00001", Required, Clients).schedule(two_deadlines.clone())],
            runs("LAB00001"),
        )
        .with(|r| {
            r.context = client;
            r.history = attempt(Outcome::Succeeded, 600);
        }),
        case(
            "always: no deadline since the last attempt, offered like an available one",
            vec![dep("LAB00001", Required, Clients).schedule(two_deadlines.clone())],
            menu(&["LAB00001"]),
        )
        .with(|r| {
            r.context = client;
            r.history = attempt(Outcome::Succeeded, 950);
        }),
        case(
            "never: once run, never again",
            vec![dep("LAB00001", Required, Clients)
                .schedule(two_deadlines.clone())
                .rerun(Rerun::Never)],
            nothing(NoDeploymentReason::RerunBlocked),
        )
        .with(|r| {
            r.context = client;
            r.history = attempt(Outcome::Failed, 600);
        })
        .rule("LAB00001", false, Rule::Rule7Rerun),
        case(
            "if failed: failed last time, next deadline runs it",
            vec![dep("LAB00001", Required, Clients)
                .schedule(two_deadlines)
                .rerun(Rerun::IfFailed)],
            runs("LAB00001"),
        )
        .with(|r| {
            r.context = client;
            r.history = attempt(Outcome::Failed, 600);
        }),
    ]);
}

// Rules 3 and 4 ---------------------------------------------------------------------------------

#[test]
fn hidden_deployment_runs_only_with_preferred_advert_id() {
    let prefer = |p: &'static str| move |r: &mut Req| r.preferred = Some(p.into());
    run_table(vec![
        case(
            "hidden alone, pxe, no preferred id",
            vec![dep("LAB00005", Available, MediaPxeHidden)],
            nothing(NoDeploymentReason::OnlyHidden),
        )
        .rule("LAB00005", false, Rule::Rule4Hidden),
        case(
            "hidden alone, media, no preferred id",
            vec![dep("LAB00005", Available, MediaPxeHidden)],
            nothing(NoDeploymentReason::OnlyHidden),
        )
        .with(|r| r.context = Context::Media)
        .rule("LAB00005", false, Rule::Rule4Hidden),
        case(
            "hidden next to a visible one: only the visible one is listed",
            vec![
                dep("LAB00005", Available, MediaPxeHidden),
                dep("LAB00004", Available, MediaPxe),
            ],
            menu(&["LAB00004"]),
        )
        .rule("LAB00005", false, Rule::Rule4Hidden)
        .rule("LAB00004", true, Rule::Rule6Available),
        case(
            "hidden, named by the preferred id, pxe",
            vec![
                dep("LAB00005", Available, MediaPxeHidden),
                dep("LAB00004", Available, MediaPxe),
            ],
            runs_preferred("LAB00005"),
        )
        .with(prefer("LAB00005"))
        .rule("LAB00005", true, Rule::Rule3Preferred)
        .rule("LAB00004", false, Rule::Rule3Preferred),
        case(
            "hidden, named by the preferred id, media",
            vec![dep("LAB00005", Available, MediaPxeHidden)],
            runs_preferred("LAB00005"),
        )
        .with(|r| {
            r.context = Context::Media;
            r.preferred = Some("LAB00005".into());
        }),
        case(
            "the preferred id is read in either case",
            vec![dep("LAB00005", Available, MediaPxeHidden)],
            runs_preferred("LAB00005"),
        )
        .with(prefer(" lab00005 ")),
        case(
            "a preferred candidate wins over a required one",
            vec![
                dep("LAB00005", Available, MediaPxeHidden),
                dep("LAB00009", Required, MediaPxe),
            ],
            runs_preferred("LAB00005"),
        )
        .with(prefer("LAB00005"))
        .rule("LAB00009", false, Rule::Rule3Preferred),
        case(
            "a visible available deployment named by the preferred id runs unattended too",
            vec![
                dep("LAB00004", Available, MediaPxe),
                dep("LAB00003", Available, MediaPxe),
            ],
            runs_preferred("LAB00003"),
        )
        .with(prefer("LAB00003")),
    ]);
}

#[test]
fn hidden_required_deployment_runs_from_pxe_without_being_listed() {
    run_table(vec![
        case(
            "hidden required",
            vec![dep("LAB00005", Required, MediaPxeHidden)],
            runs("LAB00005"),
        )
        .rule("LAB00005", true, Rule::Rule5Required),
        case(
            "hidden required guarded: nothing, and it is not listed",
            vec![
                dep("LAB00005", Required, MediaPxeHidden),
                dep("LAB00001", Available, MediaPxe),
            ],
            menu(&["LAB00001"]),
        )
        .with(|r| {
            r.history
                .record_pxe_start(machine_a().key().unwrap(), id("LAB00005"))
        })
        .rule("LAB00005", false, Rule::Rule7LoopGuard),
    ]);
}

#[test]
fn unknown_preferred_id_falls_back_with_warning() {
    let prefer = |p: &'static str| move |r: &mut Req| r.preferred = Some(p.into());
    run_table(vec![
        case(
            "no such deployment: the required one runs",
            vec![dep("LAB00002", Required, MediaPxe)],
            runs("LAB00002"),
        )
        .with(prefer("LAB0FFFF"))
        .warns(Rule::Rule3Preferred),
        case(
            "not a deployment id: the menu is shown",
            vec![dep("LAB00002", Available, MediaPxe)],
            menu(&["LAB00002"]),
        )
        .with(prefer("not-an-id"))
        .warns(Rule::Rule3Preferred),
        case(
            "a deployment to a collection that does not hold the machine",
            vec![
                dep("LAB00002", Available, MediaPxe),
                dep("LAB00003", Available, MediaPxeHidden).to(UNKNOWN),
            ],
            menu(&["LAB00002"]),
        )
        .with(prefer("LAB00003"))
        .warns(Rule::Rule3Preferred)
        .rule("LAB00003", false, Rule::Rule1Candidates),
        case(
            "a clients-only deployment",
            vec![
                dep("LAB00002", Required, MediaPxe),
                dep("LAB00003", Available, Clients),
            ],
            runs("LAB00002"),
        )
        .with(prefer("LAB00003"))
        .warns(Rule::Rule3Preferred),
        case(
            "a deployment whose boot image does not fit the firmware",
            vec![
                dep("LAB00002", Available, MediaPxe),
                dep("LAB00003", Available, MediaPxeHidden).ts("ts-arm64"),
            ],
            menu(&["LAB00002"]),
        )
        .with(prefer("LAB00003"))
        .warns(Rule::Rule3Preferred)
        .rule("LAB00003", false, Rule::Rule5aArchitecture),
        case(
            "a required deployment held back by the loop guard",
            vec![
                dep("LAB00002", Available, MediaPxe),
                dep("LAB00003", Required, MediaPxeHidden),
            ],
            menu(&["LAB00002"]),
        )
        .with(|r| {
            r.preferred = Some("LAB00003".into());
            r.history
                .record_pxe_start(machine_a().key().unwrap(), id("LAB00003"));
        })
        .warns(Rule::Rule3Preferred)
        .rule("LAB00003", false, Rule::Rule7LoopGuard),
        case(
            "nothing else to offer",
            vec![],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(prefer("LAB00001"))
        .warns(Rule::Rule3Preferred),
    ]);
}

// Rule 5 ----------------------------------------------------------------------------------------

#[test]
fn required_beats_available_highest_id_among_required() {
    run_table(vec![
        case(
            "required before a higher available",
            vec![
                dep("LAB00001", Required, MediaPxe),
                dep("LAB00009", Available, MediaPxe),
            ],
            runs("LAB00001"),
        )
        .rule("LAB00001", true, Rule::Rule5Required)
        .rule("LAB00009", false, Rule::Rule5Required),
        case(
            "highest id among required, compared as hex",
            vec![
                dep("LAB00002", Required, MediaPxe),
                dep("LAB0000A", Required, MediaPxe),
                dep("LAB00009", Required, MediaPxe),
                dep("LAB000FF", Available, MediaPxe),
            ],
            runs("LAB0000A"),
        )
        .rule("LAB00002", false, Rule::Rule5Required)
        .rule("LAB00009", false, Rule::Rule5Required),
        case(
            "hex digits carry over",
            vec![
                dep("LAB0000F", Required, MediaPxe),
                dep("LAB00010", Required, MediaPxe),
            ],
            runs("LAB00010"),
        ),
        case(
            "hidden or not does not matter between required ones",
            vec![
                dep("LAB00003", Required, MediaPxeHidden),
                dep("LAB00002", Required, ClientsMediaPxe),
            ],
            runs("LAB00003"),
        ),
        case(
            "deployments of another site order by number",
            vec![
                dep("ABC00007", Required, MediaPxe),
                dep("LAB00006", Required, MediaPxe),
            ],
            runs("ABC00007"),
        ),
        case(
            "media follows the same order",
            vec![
                dep("LAB00001", Required, MediaPxe),
                dep("LAB00002", Required, MediaPxe),
                dep("LAB00003", Available, MediaPxe),
            ],
            runs("LAB00002"),
        )
        .with(|r| r.context = Context::Media),
    ]);
}

// Rule 5a ---------------------------------------------------------------------------------------

#[test]
fn boot_image_architecture_must_fit_firmware() {
    // (option 93, 64-bit CPU, task sequence, fits)
    let table: &[(Option<u16>, bool, &str, bool)] = &[
        (Some(0), false, "ts-x86", true),
        (Some(0), false, "ts-x64", false),
        (Some(0), true, "ts-x64", true),
        (Some(0), true, "ts-arm64", false),
        (Some(6), true, "ts-x86", true),
        (Some(6), true, "ts-x64", false),
        (Some(7), true, "ts-x64", true),
        (Some(7), true, "ts-x86", false),
        (Some(7), true, "ts-arm64", false),
        (Some(9), true, "ts-x64", true),
        (Some(9), true, "ts-x86", false),
        (Some(10), true, "ts-arm64", false),
        (Some(10), true, "ts-x86", false),
        (Some(11), true, "ts-arm64", true),
        (Some(11), true, "ts-x64", false),
        (Some(16), true, "ts-x64", true),
        (Some(16), true, "ts-x86", false),
        (Some(19), true, "ts-arm64", true),
        (Some(19), true, "ts-x64", false),
        (Some(42), true, "ts-x64", false),
        (Some(42), true, "ts-x86", false),
        (None, true, "ts-arm64", true),
    ];
    for &(arch, cpu_64bit, ts, fits) in table {
        for context in [Context::Pxe, Context::Media] {
            let mut catalog = base_catalog();
            catalog.deployments = vec![dep("LAB00001", Required, MediaPxe).ts(ts)];
            let req = Req {
                arch,
                cpu_64bit,
                context,
                ..Req::default()
            };
            let d = req.decide(&catalog);
            let label = format!("option 93 {arch:?}, 64-bit {cpu_64bit}, {ts}, {context}");
            if fits {
                assert_eq!(d.unattended(), Some(id("LAB00001")), "{label}");
            } else {
                assert_eq!(
                    d.action,
                    Action::NoDeployment {
                        reason: NoDeploymentReason::NoBootableCandidate
                    },
                    "{label}"
                );
                assert_eq!(d.evaluations[0].rule, Rule::Rule5aArchitecture, "{label}");
            }
        }
    }
}

#[test]
fn exact_architecture_comes_before_compatible_then_highest_id() {
    let bios_64 = |r: &mut Req| {
        r.arch = Some(0);
        r.cpu_64bit = true;
    };
    run_table(vec![
        case(
            "bios on a 64-bit CPU: the x86 image fits exactly and wins over a higher x64 id",
            vec![
                dep("LAB00001", Required, MediaPxe).ts("ts-x86"),
                dep("LAB00002", Required, MediaPxe).ts("ts-x64"),
            ],
            runs("LAB00001"),
        )
        .with(bios_64)
        .rule("LAB00002", false, Rule::Rule5Required),
        case(
            "bios on a 64-bit CPU: an x64 image alone is compatible and runs",
            vec![dep("LAB00002", Required, MediaPxe).ts("ts-x64")],
            runs("LAB00002"),
        )
        .with(bios_64),
        case(
            "required still beats available even when the available one fits exactly",
            vec![
                dep("LAB00001", Available, MediaPxe).ts("ts-x86"),
                dep("LAB00002", Required, MediaPxe).ts("ts-x64"),
            ],
            runs("LAB00002"),
        )
        .with(bios_64),
        case(
            "the menu lists exact fits first",
            vec![
                dep("LAB00001", Available, MediaPxe).ts("ts-x86"),
                dep("LAB00002", Available, MediaPxe).ts("ts-x64"),
                dep("LAB00003", Available, MediaPxe).ts("ts-x86"),
            ],
            menu(&["LAB00003", "LAB00001", "LAB00002"]),
        )
        .with(bios_64),
        case(
            "a task sequence without a boot image cannot start from pxe",
            vec![dep("LAB00001", Required, ClientsMediaPxe).ts("ts-none")],
            nothing(NoDeploymentReason::UnresolvedReference),
        )
        .rule("LAB00001", false, Rule::UnresolvedReference),
        case(
            "a boot image that does not exist cannot start",
            vec![dep("LAB00001", Required, MediaPxe).ts("ts-broken")],
            nothing(NoDeploymentReason::UnresolvedReference),
        ),
        case(
            "a task sequence that does not exist cannot start",
            vec![dep("LAB00001", Required, MediaPxe).ts("ts-gone")],
            nothing(NoDeploymentReason::UnresolvedReference),
        ),
        case(
            "a running client does not need a boot image",
            vec![dep("LAB00001", Required, Clients).ts("ts-none")],
            runs("LAB00001"),
        )
        .with(|r| r.context = Context::Client { now: 10 }),
    ]);
}

// Rule 6 ----------------------------------------------------------------------------------------

#[test]
fn available_only_shows_menu_defaulting_to_local_disk() {
    let two = || {
        vec![
            dep("LAB00001", Available, MediaPxe),
            dep("LAB00002", Available, ClientsMediaPxe),
            dep("LAB00003", Available, MediaPxeHidden),
            dep("LAB00004", Available, Clients),
        ]
    };
    run_table(vec![
        case("pxe", two(), menu(&["LAB00002", "LAB00001"]))
            .rule("LAB00001", true, Rule::Rule6Available)
            .rule("LAB00002", true, Rule::Rule6Available)
            .rule("LAB00003", false, Rule::Rule4Hidden)
            .rule("LAB00004", false, Rule::Rule1Candidates),
        case(
            "media without a preferred id: the same list",
            two(),
            menu(&["LAB00002", "LAB00001"]),
        )
        .with(|r| r.context = Context::Media),
        case(
            "an unknown computer gets the menu of Unknown Computers",
            vec![
                dep("LAB00001", Available, MediaPxe).to(UNKNOWN),
                dep("LAB00002", Available, MediaPxe),
            ],
            menu(&["LAB00001"]),
        )
        .with(|r| r.machine = stranger()),
    ]);
}

// Rule 7 ----------------------------------------------------------------------------------------

fn continuing(step: usize) -> impl Fn(&mut Req) {
    move |r: &mut Req| {
        let key = IdentityKey::Uuid(UUID_A);
        r.history.record_pxe_start(key, id("LAB00001"));
        r.history.record_restart(key, id("LAB00001"), step);
    }
}

#[test]
fn a_run_that_restarted_mid_sequence_continues_past_the_loop_guard() {
    run_table(vec![
        case(
            "restarted: the guarded deployment runs again to continue",
            vec![dep("LAB00001", Required, MediaPxe)],
            Want::Runs("LAB00001", RunReason::Continuing),
        )
        .with(continuing(2))
        .rule("LAB00001", true, Rule::Rule7Resume),
        case(
            "restarted: it comes before a higher required deployment",
            vec![
                dep("LAB00001", Required, MediaPxe),
                dep("LAB00002", Required, MediaPxe),
            ],
            Want::Runs("LAB00001", RunReason::Continuing),
        )
        .with(continuing(2))
        .rule("LAB00002", false, Rule::Rule7LoopGuard),
        case(
            "restarted: an available deployment continues without a menu",
            vec![
                dep("LAB00001", Available, MediaPxe),
                dep("LAB00002", Available, MediaPxe),
            ],
            Want::Runs("LAB00001", RunReason::Continuing),
        )
        .with(continuing(1))
        .rule("LAB00002", false, Rule::Rule7Resume),
        case(
            "restarted: boot media continue it too, whatever the rerun behaviour",
            vec![dep("LAB00001", Required, MediaPxe).rerun(Rerun::Never)],
            Want::Runs("LAB00001", RunReason::Continuing),
        )
        .with(continuing(1))
        .with(|r| {
            r.context = Context::Media;
            r.history.record_attempt(
                IdentityKey::Uuid(UUID_A),
                id("LAB00001"),
                Attempt {
                    outcome: Outcome::Interrupted,
                    at: 0,
                },
            );
        }),
        case(
            "restarted on another machine: this one stays guarded",
            vec![dep("LAB00001", Required, MediaPxe)],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(|r| {
            r.history
                .record_pxe_start(IdentityKey::Uuid(UUID_A), id("LAB00001"));
            r.history
                .record_restart(IdentityKey::Mac(MAC_B), id("LAB00001"), 1);
        }),
    ]);
}

#[test]
fn the_decision_says_where_the_run_continues_and_only_its_end_ends_it() {
    let mut catalog = base_catalog();
    catalog.deployments = vec![dep("LAB00001", Required, MediaPxe)];
    let mut req = Req::default();
    continuing(3)(&mut req);
    let d = req.decide(&catalog);
    assert_eq!(d.resume_at, 3);
    let report = explain_text(&d);
    assert!(
        report.contains("continuing after a restart (rule 7)")
            && report.contains("it continues at step 4"),
        "{report}"
    );
    // The agent's next start does not end it; its end does, and the loop guard holds again.
    let key = IdentityKey::Uuid(UUID_A);
    let started = Attempt {
        outcome: Outcome::Interrupted,
        at: 0,
    };
    req.history.record_attempt(key, id("LAB00001"), started);
    assert_eq!(req.decide(&catalog).resume_at, 3);
    for outcome in [Outcome::Succeeded, Outcome::Failed] {
        let mut h = req.history.clone();
        h.record_attempt(key, id("LAB00001"), Attempt { outcome, at: 0 });
        let d = Req {
            history: h,
            ..req.clone()
        }
        .decide(&catalog);
        assert_eq!(d.resume_at, 0);
        assert!(
            matches!(
                d.action,
                Action::NoDeployment {
                    reason: NoDeploymentReason::LoopGuard { .. }
                }
            ),
            "{outcome:?}: {:?}",
            d.action
        );
    }
    // Nothing else says where to start.
    assert_eq!(Req::default().decide(&catalog).resume_at, 0);
}

#[test]
fn the_pxe_password_is_asked_when_a_run_starts_not_when_it_continues_after_a_restart() {
    let mut catalog = base_catalog();
    catalog.deployments = vec![dep("LAB00001", Required, MediaPxe)];
    let mut req = Req::default();
    req.settings.pxe_password_set = true;
    assert!(req.decide(&catalog).password_required, "a run that starts");
    continuing(3)(&mut req);
    let d = req.decide(&catalog);
    assert!(
        matches!(
            d.action,
            Action::RunUnattended {
                reason: RunReason::Continuing,
                ..
            }
        ),
        "{:?}",
        d.action
    );
    assert!(!d.password_required, "a run that continues at step 4");
}

#[test]
fn loop_guard_blocks_required_until_cleared() {
    let guarded = |key: IdentityKey| {
        move |r: &mut Req| {
            r.history.record_pxe_start(key, id("LAB00001"));
        }
    };
    let uuid_a = IdentityKey::Uuid(UUID_A);
    let cleared = {
        let mut h = History::new();
        h.record_pxe_start(uuid_a, id("LAB00001"));
        let catalog = base_catalog();
        assert_eq!(
            h.clear_device(&catalog, catalog.device("lab-a").unwrap())
                .len(),
            1
        );
        h
    };
    run_table(vec![
        case(
            "guarded: the required deployment does not start again",
            vec![dep("LAB00001", Required, MediaPxe)],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(guarded(uuid_a))
        .rule("LAB00001", false, Rule::Rule7LoopGuard),
        case(
            "guarded: no other required deployment starts either",
            vec![
                dep("LAB00001", Required, MediaPxe),
                dep("LAB00002", Required, MediaPxe),
            ],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(guarded(uuid_a))
        .rule("LAB00002", false, Rule::Rule7LoopGuard),
        case(
            "guarded: available deployments stay selectable",
            vec![
                dep("LAB00001", Required, MediaPxe),
                dep("LAB00002", Available, MediaPxe),
            ],
            menu(&["LAB00002"]),
        )
        .with(guarded(uuid_a))
        .rule("LAB00001", false, Rule::Rule7LoopGuard)
        .rule("LAB00002", true, Rule::Rule6Available),
        case(
            "guarded under the UUID, seen with the MAC only: still guarded",
            vec![dep("LAB00001", Required, MediaPxe)],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(guarded(uuid_a))
        .with(|r| r.machine.uuid = None),
        case(
            "the guard is a pxe matter: media follows rerun behaviour",
            vec![dep("LAB00001", Required, MediaPxe)],
            runs("LAB00001"),
        )
        .with(guarded(uuid_a))
        .with(|r| r.context = Context::Media),
        case(
            "cleared by an operator: runs again",
            vec![dep("LAB00001", Required, MediaPxe)],
            runs("LAB00001"),
        )
        .with(|r| r.history = cleared.clone()),
        case(
            "another machine's guard does not matter",
            vec![dep("LAB00001", Required, MediaPxe)],
            runs("LAB00001"),
        )
        .with(guarded(IdentityKey::Mac(MAC_B))),
        case(
            "an unknown computer is guarded by its UUID",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(|r| r.machine = stranger())
        .with(guarded(IdentityKey::Uuid(UUID_X))),
        case(
            "an unknown computer without a UUID is guarded by its MAC",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            nothing(NoDeploymentReason::LoopGuard {
                started: id("LAB00001"),
            }),
        )
        .with(|r| {
            r.machine = MachineIdentity {
                mac: Some(MAC_X),
                uuid: None,
            }
        })
        .with(guarded(IdentityKey::Mac(MAC_X))),
        case(
            "another unknown computer is not guarded",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            runs("LAB00001"),
        )
        .with(|r| {
            r.machine = MachineIdentity {
                mac: Some(MAC_Y),
                uuid: None,
            }
        })
        .with(guarded(IdentityKey::Mac(MAC_X))),
    ]);
}

#[test]
fn media_follows_rerun_behaviour() {
    use Outcome::*;
    // (rerun, last attempt, runs again)
    let table: &[(Rerun, Option<Outcome>, bool)] = &[
        (Rerun::Always, None, true),
        (Rerun::Always, Some(Succeeded), true),
        (Rerun::Always, Some(Failed), true),
        (Rerun::Never, None, true),
        (Rerun::Never, Some(Succeeded), false),
        (Rerun::Never, Some(Failed), false),
        (Rerun::IfFailed, None, true),
        (Rerun::IfFailed, Some(Failed), true),
        (Rerun::IfFailed, Some(Succeeded), false),
        (Rerun::IfSucceeded, None, true),
        (Rerun::IfSucceeded, Some(Succeeded), true),
        (Rerun::IfSucceeded, Some(Failed), false),
        // A run that started and never ended (a power cut) counts as run, not as succeeded.
        (Rerun::Always, Some(Interrupted), true),
        (Rerun::Never, Some(Interrupted), false),
        (Rerun::IfFailed, Some(Interrupted), true),
        (Rerun::IfSucceeded, Some(Interrupted), false),
    ];
    for &(rerun, last, again) in table {
        for purpose in [Required, Available] {
            let mut catalog = base_catalog();
            catalog.deployments = vec![dep("LAB00001", purpose, MediaPxe).rerun(rerun)];
            let mut req = Req {
                context: Context::Media,
                ..Req::default()
            };
            if let Some(outcome) = last {
                req.history.record_attempt(
                    machine_a().key().unwrap(),
                    id("LAB00001"),
                    Attempt { outcome, at: 1 },
                );
            }
            let d = req.decide(&catalog);
            let label = format!("{rerun}, last {last:?}, {purpose:?}");
            match (purpose, again) {
                (Required, true) => assert_eq!(d.unattended(), Some(id("LAB00001")), "{label}"),
                (Required, false) => {
                    assert_eq!(
                        d.action,
                        Action::NoDeployment {
                            reason: NoDeploymentReason::RerunBlocked
                        },
                        "{label}"
                    );
                    assert_eq!(d.evaluations[0].rule, Rule::Rule7Rerun, "{label}");
                }
                // A user can always run an available deployment again.
                (Available, _) => assert_eq!(d.menu(), &[id("LAB00001")], "{label}"),
            }
        }
    }
}

// Rule 8 ----------------------------------------------------------------------------------------

#[test]
fn pre_production_boot_image_is_no_candidate_outside_the_pilot_collection() {
    let mut catalog = base_catalog();
    catalog.boot_images.push(BootImage {
        pre_production: true,
        ..boot_image("bi-pre", ImageArch::X64)
    });
    catalog
        .task_sequences
        .push(task_sequence("ts-pre", Some("bi-pre")));
    catalog.deployments = vec![dep("LAB00001", Required, MediaPxe).to(ALL).ts("ts-pre")];
    let pilot = |machine: MachineIdentity| Req {
        machine,
        settings: ServerSettings {
            pre_production_collection: Some(LAB.into()),
            ..Req::default().settings
        },
        ..Req::default()
    };
    // lab-a is in the pilot collection: the deployment runs.
    let d = pilot(machine_a()).decide(&catalog);
    assert_eq!(d.unattended(), Some(id("LAB00001")), "{d:?}");
    // lab-b is not: no candidate, so PXE makes no offer at all (rule 8).
    let d = pilot(machine_b()).decide(&catalog);
    assert_eq!(
        d.action,
        Action::NoDeployment {
            reason: NoDeploymentReason::PreProductionOnly
        }
    );
    let e = d.evaluation(&id("LAB00001")).unwrap();
    assert_eq!(e.rule, Rule::PreProduction);
    assert!(e.explanation.contains("bi-pre is pre-production"), "{e:?}");
    // Without a pilot collection nobody boots a pre-production image.
    let d = Req::default().decide(&catalog);
    assert!(matches!(d.action, Action::NoDeployment { .. }), "{d:?}");
}

#[test]
fn no_candidate_gets_no_deployment_with_reason() {
    run_table(vec![
        case(
            "empty catalog",
            vec![],
            nothing(NoDeploymentReason::NoCandidate),
        ),
        case(
            "everything targets other machines",
            vec![
                dep("LAB00001", Required, MediaPxe).to(UNKNOWN),
                dep("LAB00002", Available, MediaPxe).to(UNKNOWN),
            ],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .rule("LAB00001", false, Rule::Rule1Candidates)
        .rule("LAB00002", false, Rule::Rule1Candidates),
        case(
            "the media is told plainly",
            vec![],
            nothing(NoDeploymentReason::NoCandidate),
        )
        .with(|r| r.context = Context::Media),
    ]);
    let d = Req::default().decide(&base_catalog());
    let text = explain_text(&d);
    assert!(
        text.contains("nothing is deployed to this machine"),
        "{text}"
    );
    assert!(text.contains("no boot offer is sent (rule 8)"), "{text}");
}

// Rule 9 ----------------------------------------------------------------------------------------

#[test]
fn unknown_computers_switched_off_get_no_offer() {
    let off = |r: &mut Req| r.settings.unknown_computers_enabled = false;
    run_table(vec![
        case(
            "unknown computer, switched off",
            vec![
                dep("LAB00001", Required, MediaPxe).to(UNKNOWN),
                dep("LAB00002", Available, MediaPxe).to(UNKNOWN),
            ],
            nothing(NoDeploymentReason::UnknownComputersDisabled),
        )
        .with(|r| r.machine = stranger())
        .with(off)
        .rule("LAB00001", false, Rule::Rule9UnknownDisabled)
        .rule("LAB00002", false, Rule::Rule9UnknownDisabled),
        case(
            "unknown computer, switched off, even with a preferred id",
            vec![dep("LAB00001", Available, MediaPxeHidden).to(UNKNOWN)],
            nothing(NoDeploymentReason::UnknownComputersDisabled),
        )
        .with(|r| {
            r.machine = stranger();
            r.context = Context::Media;
            r.preferred = Some("LAB00001".into());
        })
        .with(off)
        .warns(Rule::Rule9UnknownDisabled),
        case(
            "known device, switched off: not affected",
            vec![dep("LAB00001", Required, MediaPxe)],
            runs("LAB00001"),
        )
        .with(off),
        case(
            "unknown computer, switched on",
            vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)],
            runs("LAB00001"),
        )
        .with(|r| r.machine = stranger()),
    ]);
}

#[test]
fn pxe_password_is_required_only_for_an_offer_through_pxe() {
    // (context, password set, something offered, password required)
    let table = [
        (Context::Pxe, true, true, true),
        (Context::Pxe, false, true, false),
        (Context::Pxe, true, false, false),
        (Context::Media, true, true, false),
    ];
    for (context, set, offered, required) in table {
        let mut catalog = base_catalog();
        if offered {
            catalog.deployments = vec![dep("LAB00001", Available, MediaPxe)];
        }
        let mut req = Req {
            context,
            ..Req::default()
        };
        req.settings.pxe_password_set = set;
        let d = req.decide(&catalog);
        assert_eq!(
            d.password_required, required,
            "{context}, set {set}, offered {offered}"
        );
    }
}

// Matching --------------------------------------------------------------------------------------

#[test]
fn uuid_matches_before_mac() {
    // The machine's UUID is lab-a's, its MAC lab-b's: it is lab-a.
    let table: &[(MachineIdentity, Option<&str>)] = &[
        (
            MachineIdentity {
                mac: Some(MAC_B),
                uuid: Some(UUID_A),
            },
            Some("lab-a"),
        ),
        (
            MachineIdentity {
                mac: Some(MAC_B),
                uuid: Some(UUID_X),
            },
            Some("lab-b"),
        ),
        (
            MachineIdentity {
                mac: None,
                uuid: Some(UUID_A),
            },
            Some("lab-a"),
        ),
        (
            MachineIdentity {
                mac: Some(MAC_A),
                uuid: None,
            },
            Some("lab-a"),
        ),
        (stranger(), None),
        (MachineIdentity::default(), None),
    ];
    let mut catalog = base_catalog();
    catalog.deployments = vec![dep("LAB00001", Required, MediaPxe)];
    for (machine, device) in table {
        let d = Req {
            machine: *machine,
            ..Req::default()
        }
        .decide(&catalog);
        assert_eq!(d.device.as_deref(), *device, "{machine:?}");
        let runs = *device == Some("lab-a");
        assert_eq!(d.unattended().is_some(), runs, "{machine:?}");
    }
}

// Rule 10 ---------------------------------------------------------------------------------------

#[test]
fn explain_names_the_choice_and_cites_a_rule_for_every_deployment() {
    let mut catalog = base_catalog();
    catalog.deployments = vec![
        dep("LAB00001", Available, MediaPxe),
        dep("LAB00002", Required, MediaPxe),
        dep("LAB00003", Required, MediaPxe).ts("ts-arm64"),
        dep("LAB00004", Required, Clients),
        dep("LAB00005", Available, MediaPxeHidden),
    ];
    let req = Req {
        preferred: Some("LAB00099".into()),
        ..Req::default()
    };
    let d = req.decide(&catalog);
    let text = explain_text(&d);
    for line in [
        "machine:  uuid aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa, mac 52:54:00:00:00:0a",
        "matched:  device lab-a",
        "firmware: option 93 = 7 (efi-x64)",
        "decision: run LAB00002 unattended, no menu: required (rule 5)",
        "warning:  rule 3 (preferred deployment id): preferred deployment LAB00099 does not exist",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "deployments:")
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 5, "{text}");
    // Highest id first, each with its rule.
    let expect = [
        ("LAB00005", "not chosen", "rule 5"),
        ("LAB00004", "not chosen", "rule 1"),
        ("LAB00003", "not chosen", "rule 5a"),
        ("LAB00002", "runs", "rule 5"),
        ("LAB00001", "not chosen", "rule 5"),
    ];
    for (row, (deployment, status, rule)) in rows.iter().zip(expect) {
        let cols: Vec<&str> = row.split("  ").filter(|c| !c.trim().is_empty()).collect();
        assert_eq!(cols[0].trim(), deployment, "{row}");
        assert_eq!(cols[1].trim(), status, "{row}");
        assert_eq!(cols[2].trim(), rule, "{row}");
    }
    assert!(
        text.contains("arm64, but efi-x64 firmware needs x64"),
        "{text}"
    );
    assert!(text.contains("never reaches pxe"), "{text}");
}

#[test]
fn decisions_serialize_for_the_api() {
    let mut catalog = base_catalog();
    catalog.deployments = vec![dep("LAB00002", Required, MediaPxe)];
    let d = Req::default().decide(&catalog);
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("\"action\":\"run_unattended\""), "{json}");
    assert!(json.contains("\"rule\":\"rule5_required\""), "{json}");
    let back: Decision = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
}

// Section 10: identity ------------------------------------------------------------------------

/// What a device is declared with, or what a machine sends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Parts {
    Mac,
    Uuid,
    Both,
}

const ALL_PARTS: [Parts; 3] = [Parts::Mac, Parts::Uuid, Parts::Both];

fn identity(parts: Parts, mac: Mac, uuid: SmbiosUuid) -> MachineIdentity {
    MachineIdentity {
        mac: (parts != Parts::Uuid).then_some(mac),
        uuid: (parts != Parts::Mac).then_some(uuid),
    }
}

/// `lab-a` declared with `parts` of MAC_A and UUID_A, a required deployment to [`LAB`].
fn catalog_declaring_lab_a(parts: Parts) -> Catalog {
    let mut c = catalog_with(vec![dep("LAB00001", Required, MediaPxe)]);
    let d = identity(parts, MAC_A, UUID_A);
    c.devices[0] = Device {
        macs: d.mac.into_iter().collect(),
        uuid: d.uuid,
        ..c.devices[0].clone()
    };
    c
}

fn decide_with(catalog: &Catalog, machine: MachineIdentity, history: &History) -> Decision {
    Req {
        machine,
        history: history.clone(),
        ..Req::default()
    }
    .decide(catalog)
}

fn guarded(d: &Decision) -> bool {
    matches!(
        d.action,
        Action::NoDeployment {
            reason: NoDeploymentReason::LoopGuard { .. }
        }
    )
}

#[test]
fn loop_guard_recorded_with_mac_and_uuid_holds_and_clears_whatever_the_device_was_declared_with() {
    use crate::catalog::identity::{Sightings, UuidPolicy};
    for declared in ALL_PARTS {
        let catalog = catalog_declaring_lab_a(declared);
        // Old versions recorded a single key; new ones the whole identity.
        for recorded in ALL_PARTS {
            for sent in ALL_PARTS {
                let boot = identity(sent, MAC_A, UUID_A);
                // The server notes each MAC and UUID it sees together.
                let mut seen = Sightings::new();
                for m in [identity(recorded, MAC_A, UUID_A), boot] {
                    if let (Some(mac), Some(uuid)) = (m.mac, m.uuid) {
                        seen.record(uuid, mac, 1);
                    }
                }
                let mut history = History::new().with_uuid_policy(UuidPolicy::new([], seen));
                history.record_pxe_start(identity(recorded, MAC_A, UUID_A), id("LAB00001"));
                let case = format!("declared {declared:?}, recorded {recorded:?}, sent {sent:?}");
                let before = decide_with(&catalog, boot, &history);
                if before.device.is_none() {
                    // A part the device was not declared with: not lab-a, nothing to guard.
                    continue;
                }
                let linked = recorded == Parts::Both
                    || sent == Parts::Both
                    || recorded == sent
                    || declared == Parts::Both;
                assert_eq!(
                    guarded(&before),
                    linked,
                    "{case}\n{}",
                    explain_text(&before)
                );
                if !linked {
                    continue;
                }

                let mut by_device = history.clone();
                let gone = by_device.clear_device(&catalog, &catalog.devices[0]);
                assert_eq!(gone.len(), 1, "{case}: clear --device");
                assert_eq!(gone[0].deployment, id("LAB00001"));
                assert!(!guarded(&decide_with(&catalog, boot, &by_device)), "{case}");

                let mut by_collection = history.clone();
                let gone = by_collection.clear_collection(&catalog, LAB).unwrap();
                assert_eq!(gone.len(), 1, "{case}: clear --collection");
                assert!(
                    !guarded(&decide_with(&catalog, boot, &by_collection)),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn unknown_computer_is_cleared_by_the_mac_or_the_uuid_it_sent() {
    let catalog = catalog_with(vec![dep("LAB00001", Required, MediaPxe).to(UNKNOWN)]);
    let mut h = History::new();
    h.record_pxe_start(stranger(), id("LAB00001"));
    h.record_pxe_start(machine_b(), id("LAB00001"));
    assert!(guarded(&decide_with(&catalog, stranger(), &h)));
    let mut by_mac = h.clone();
    assert_eq!(by_mac.clear_mac(&MAC_X).len(), 1);
    assert!(!guarded(&decide_with(&catalog, stranger(), &by_mac)));
    let mut by_uuid = h.clone();
    assert_eq!(by_uuid.clear_uuid(&UUID_X).len(), 1);
    assert!(!guarded(&decide_with(&catalog, stranger(), &by_uuid)));
    // Only that machine's guard went.
    assert_eq!(by_uuid.guards().count(), 1);
    assert_eq!(h.clone().clear_mac(&MAC_Y).len(), 0);
}

#[test]
fn a_uuid_seen_with_two_macs_never_merges_two_machines() {
    use crate::catalog::identity::{Sightings, UuidPolicy};
    let catalog = catalog_with(vec![
        dep("LAB00001", Required, MediaPxe),
        dep("LAB00002", Required, MediaPxe).to(UNKNOWN),
    ]);
    // Another board sends lab-a's UUID from its own MAC.
    let twin = MachineIdentity {
        mac: Some(MAC_X),
        uuid: Some(UUID_A),
    };
    let mut seen = Sightings::new();
    seen.record(UUID_A, MAC_A, 1);
    let before = decide_with(&catalog, twin, &History::new());
    assert_eq!(
        before.device.as_deref(),
        Some("lab-a"),
        "one sighting: UUID first"
    );

    seen.record(UUID_A, MAC_X, 2);
    let mut h = History::new().with_uuid_policy(UuidPolicy::new([], seen));
    let d = decide_with(&catalog, twin, &h);
    assert_eq!(d.device, None, "{}", explain_text(&d));
    assert_eq!(d.unattended(), Some(id("LAB00002")));
    assert_eq!(
        d.warnings.iter().map(|w| w.rule).collect::<Vec<_>>(),
        vec![Rule::Identity]
    );
    // Its status messages are kept under its MAC, apart from lab-a's.
    assert_eq!(d.identity_key(), Some(IdentityKey::Mac(MAC_X)));
    assert_eq!(
        decide_with(&catalog, machine_a(), &h).identity_key(),
        Some(IdentityKey::Mac(MAC_A))
    );
    assert_eq!(
        decide_with(&catalog, machine_a(), &History::new()).identity_key(),
        Some(IdentityKey::Uuid(UUID_A))
    );
    let text = explain_text(&d);
    assert!(text.contains("not used to identify this machine"), "{text}");
    assert!(text.contains(&MAC_X.to_string()), "{text}");

    // Each one's guard stays its own, and clearing lab-a leaves the twin's.
    h.record_pxe_start(twin, id("LAB00002"));
    assert!(!guarded(&decide_with(&catalog, machine_a(), &h)));
    h.record_pxe_start(machine_a(), id("LAB00001"));
    assert!(guarded(&decide_with(&catalog, machine_a(), &h)));
    assert!(guarded(&decide_with(&catalog, twin, &h)));
    let gone = h.clear_device(&catalog, catalog.device("lab-a").unwrap());
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].machine, machine_a());
    assert!(guarded(&decide_with(&catalog, twin, &h)));
}

#[test]
fn placeholder_and_ignored_uuids_do_not_identify_a_machine() {
    use crate::catalog::identity::{Sightings, UuidPolicy, PLACEHOLDER_UUIDS};
    let listed = SmbiosUuid([0x42; 16]);
    for shared in PLACEHOLDER_UUIDS.into_iter().chain([listed]) {
        let mut catalog = catalog_with(vec![dep("LAB00001", Required, MediaPxe)]);
        catalog.devices[0].uuid = Some(shared);
        let h = History::new().with_uuid_policy(UuidPolicy::new([listed], Sightings::new()));
        let other = MachineIdentity {
            mac: Some(MAC_X),
            uuid: Some(shared),
        };
        let d = decide_with(&catalog, other, &h);
        assert_eq!(d.device, None, "{shared}");
        assert!(d.uuid_not_used.is_some(), "{shared}");
        // Not a duplicate: no warning at every boot of a board without a UUID of its own.
        assert!(d.warnings.is_empty(), "{shared}");
        // lab-a itself is still known by its MAC.
        let own = MachineIdentity {
            mac: Some(MAC_A),
            uuid: Some(shared),
        };
        assert_eq!(
            decide_with(&catalog, own, &h).device.as_deref(),
            Some("lab-a")
        );
    }
}

fn arb_recorded() -> impl Strategy<Value = MachineIdentity> {
    let placeholder = SmbiosUuid([0; 16]);
    (
        proptest::option::of(prop_oneof![
            Just(MAC_A),
            Just(MAC_B),
            Just(MAC_X),
            Just(MAC_Y)
        ]),
        proptest::option::of(prop_oneof![Just(UUID_A), Just(UUID_X), Just(placeholder)]),
    )
        .prop_map(|(mac, uuid)| MachineIdentity { mac, uuid })
}

proptest! {
    /// `pxe clear --device` lifts every guard that holds the device back, and only guards
    /// recorded with one of its identities.
    #[test]
    fn clearing_a_device_lifts_exactly_its_guards(
        declared in prop_oneof![Just(Parts::Mac), Just(Parts::Uuid), Just(Parts::Both)],
        guards in proptest::collection::vec((arb_recorded(), 1u32..=3), 0..6),
        seen in proptest::collection::vec(
            (prop_oneof![Just(UUID_A), Just(UUID_X)], prop_oneof![Just(MAC_A), Just(MAC_X)]),
            0..3,
        ),
        boot in prop_oneof![Just(Parts::Mac), Just(Parts::Both)],
    ) {
        use crate::catalog::identity::{Sightings, UuidPolicy};
        let catalog = catalog_declaring_lab_a(declared);
        let mut sightings = Sightings::new();
        for (u, m) in seen {
            sightings.record(u, m, 1);
        }
        if boot == Parts::Both {
            sightings.record(UUID_A, MAC_A, 2);
        }
        // The server noted every MAC and UUID it saw together.
        for (m, _) in &guards {
            if let (Some(mac), Some(uuid)) = (m.mac, m.uuid) {
                sightings.record(uuid, mac, 1);
            }
        }
        let policy = UuidPolicy::new([], sightings);
        let mut h = History::new().with_uuid_policy(policy.clone());
        for (m, n) in guards {
            if m != MachineIdentity::default() {
                h.record_pxe_start(m, DeploymentId::new("LAB", n).unwrap());
            }
        }
        let lab_a = catalog.device("lab-a").unwrap();
        let before: Vec<Guard> = h.guards().copied().collect();
        let mut after = h.clone();
        let gone = after.clear_device(&catalog, lab_a);
        prop_assert_eq!(gone.len() + after.guards().count(), before.len());
        let machine = identity(boot, MAC_A, UUID_A);
        let d = decide_with(&catalog, machine, &after);
        if d.device.as_deref() == Some("lab-a") {
            prop_assert!(!guarded(&d), "{}", explain_text(&d));
        }
        for g in after.guards() {
            let m = policy.known_as(&g.machine);
            prop_assert!(m.mac.is_none_or(|m| !lab_a.macs.contains(&m)));
            prop_assert!(catalog.match_device(&m).is_none_or(|d| d.name != "lab-a"));
        }
    }
}

// Properties ------------------------------------------------------------------------------------

const COLLECTIONS: [&str; 4] = [ALL, UNKNOWN, LAB, "NOPE0001"];
const TASK_SEQUENCES: [&str; 6] = [
    "ts-x86",
    "ts-x64",
    "ts-arm64",
    "ts-none",
    "ts-broken",
    "ts-gone",
];
const AVAILABLE_TO: [AvailableTo; 4] = [Clients, ClientsMediaPxe, MediaPxe, MediaPxeHidden];
const RERUN: [Rerun; 4] = [
    Rerun::Never,
    Rerun::Always,
    Rerun::IfFailed,
    Rerun::IfSucceeded,
];

fn arb_schedule() -> impl Strategy<Value = Schedule> {
    (
        proptest::option::of(0i64..3000),
        proptest::option::of(0i64..3000),
        proptest::collection::vec(0i64..3000, 0..3),
        0usize..4,
    )
        .prop_map(|(available_at, expires_at, assignments, r)| Schedule {
            available_at,
            expires_at,
            assignments,
            rerun: RERUN[r],
        })
}

fn arb_deployments() -> impl Strategy<Value = Vec<Deployment>> {
    subsequence((1u32..=40).collect::<Vec<_>>(), 0..10).prop_flat_map(|numbers| {
        let n = numbers.len();
        let parts = proptest::collection::vec(
            (
                any::<bool>(),
                any::<bool>(),
                0usize..4,
                0usize..4,
                0usize..6,
                arb_schedule(),
            ),
            n,
        );
        (Just(numbers), parts).prop_map(|(numbers, parts)| {
            numbers
                .into_iter()
                .zip(parts)
                .map(|(number, (other_site, required, to, coll, ts, schedule))| {
                    let site = if other_site { "ABC" } else { "LAB" };
                    let mut d = dep(
                        &DeploymentId::new(site, number).unwrap().to_string(),
                        if required { Required } else { Available },
                        AVAILABLE_TO[to],
                    );
                    d.collection = COLLECTIONS[coll].into();
                    d.task_sequence = TASK_SEQUENCES[ts].into();
                    d.schedule = schedule;
                    d
                })
                .collect()
        })
    })
}

fn arb_machine() -> impl Strategy<Value = MachineIdentity> {
    prop_oneof![
        Just(machine_a()),
        Just(MachineIdentity {
            mac: Some(MAC_A),
            uuid: None
        }),
        Just(machine_b()),
        Just(stranger()),
        Just(MachineIdentity::default()),
    ]
}

fn arb_key() -> impl Strategy<Value = IdentityKey> {
    prop_oneof![
        Just(IdentityKey::Uuid(UUID_A)),
        Just(IdentityKey::Mac(MAC_A)),
        Just(IdentityKey::Mac(MAC_B)),
        Just(IdentityKey::Uuid(UUID_X)),
        Just(IdentityKey::Mac(MAC_X)),
    ]
}

fn arb_history() -> impl Strategy<Value = History> {
    (
        proptest::option::of((arb_key(), 1u32..=40)),
        proptest::collection::vec((arb_key(), 1u32..=40, any::<bool>(), 0i64..3000), 0..6),
    )
        .prop_map(|(guard, attempts)| {
            let mut h = History::new();
            if let Some((key, n)) = guard {
                h.record_pxe_start(key, DeploymentId::new("LAB", n).unwrap());
            }
            for (key, n, ok, at) in attempts {
                let outcome = if ok {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
                h.record_attempt(
                    key,
                    DeploymentId::new("LAB", n).unwrap(),
                    Attempt { outcome, at },
                );
            }
            h
        })
}

fn arb_boot_context() -> impl Strategy<Value = Context> {
    prop_oneof![Just(Context::Pxe), Just(Context::Media)]
}

fn arb_context() -> impl Strategy<Value = Context> {
    prop_oneof![
        Just(Context::Pxe),
        Just(Context::Media),
        (0i64..3000).prop_map(|now| Context::Client { now }),
    ]
}

fn arb_req(context: impl Strategy<Value = Context>) -> impl Strategy<Value = Req> {
    (
        arb_machine(),
        proptest::option::of(prop_oneof![
            Just(0u16),
            Just(6),
            Just(7),
            Just(9),
            Just(11),
            Just(16),
            Just(42)
        ]),
        any::<bool>(),
        context,
        proptest::option::of(prop_oneof![
            (1u32..=40).prop_map(|n| format!("LAB{n:05X}")),
            (1u32..=40).prop_map(|n| format!("abc{n:05x}")),
            Just("garbage".to_string()),
        ]),
        arb_history(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(machine, arch, cpu_64bit, context, preferred, history, unknown, password)| Req {
                machine,
                arch,
                cpu_64bit,
                context,
                preferred,
                history,
                settings: ServerSettings {
                    unknown_computers_enabled: unknown,
                    pxe_password_set: password,
                    pre_production_collection: None,
                },
            },
        )
}

fn catalog_with(deployments: Vec<Deployment>) -> Catalog {
    Catalog {
        deployments,
        ..base_catalog()
    }
}

proptest! {
    #[test]
    fn an_indexed_catalog_decides_as_the_plain_one_less_the_rule_1_exclusions(
        deployments in arb_deployments(),
        extra in proptest::collection::vec((0usize..3, any::<bool>()), 0..4),
        req in arb_req(arb_context()),
    ) {
        let mut catalog = catalog_with(deployments);
        // Devices that share a MAC or a UUID with lab-a and lab-b (an inconsistent catalog),
        // named before or after them, and a second collection of an existing id.
        for (i, (which, before)) in extra.into_iter().enumerate() {
            let name = format!("{}-{i}", if before { "a" } else { "z" });
            catalog.devices.push(match which {
                0 => device(&name, MAC_A, None),
                1 => device(&name, MAC_X, Some(UUID_A)),
                _ => device(&name, MAC_B, Some(UUID_X)),
            });
        }
        catalog.collections.push(Collection {
            id: LAB.into(),
            name: "shadowed".into(),
            kind: CollectionKind::Custom { members: vec!["lab-b".into()] },
        });
        let plain = req.decide(&catalog);
        let indexed = req.decide_on(&crate::catalog::index::IndexedCatalog::new(catalog.clone()));
        let kept: Vec<Evaluation> = plain
            .evaluations
            .iter()
            .filter(|e| indexed.evaluation(&e.deployment_id).is_some())
            .cloned()
            .collect();
        prop_assert_eq!(&indexed.evaluations, &kept);
        for e in &plain.evaluations {
            if indexed.evaluation(&e.deployment_id).is_none() {
                prop_assert!(
                    matches!(e.rule, Rule::Rule1Candidates | Rule::Rule9UnknownDisabled),
                    "{:?} left out", e
                );
            }
        }
        prop_assert_eq!(
            Decision { evaluations: vec![], ..plain },
            Decision { evaluations: vec![], ..indexed }
        );
    }

    #[test]
    fn decision_is_deterministic_and_independent_of_deployment_order(
        (deployments, shuffled) in arb_deployments()
            .prop_flat_map(|d| (Just(d.clone()), Just(d).prop_shuffle())),
        req in arb_req(arb_context()),
    ) {
        let first = req.decide(&catalog_with(deployments.clone()));
        let again = req.decide(&catalog_with(deployments));
        let reordered = req.decide(&catalog_with(shuffled));
        prop_assert_eq!(&first, &again);
        prop_assert_eq!(&first, &reordered);
        prop_assert_eq!(explain_text(&first), explain_text(&reordered));
    }

    #[test]
    fn hidden_deployment_is_never_listed_in_a_menu(
        deployments in arb_deployments(),
        req in arb_req(arb_context()),
    ) {
        let catalog = catalog_with(deployments);
        let d = req.decide(&catalog);
        for entry in d.menu() {
            let listed = catalog.deployment(entry).unwrap();
            prop_assert!(!listed.available_to.is_hidden(), "{} listed", entry);
        }
        // A hidden deployment runs only as required or when named by the preferred id.
        if let Action::RunUnattended { deployment, reason } = &d.action {
            let chosen = catalog.deployment(deployment).unwrap();
            if chosen.available_to.is_hidden() && chosen.purpose == Purpose::Available {
                prop_assert_eq!(*reason, RunReason::Preferred);
            }
        }
    }

    #[test]
    fn schedule_times_never_matter_in_pxe_or_media(
        deployments in arb_deployments(),
        other in proptest::collection::vec(arb_schedule(), 10),
        req in arb_req(arb_boot_context()),
    ) {
        let rescheduled: Vec<Deployment> = deployments
            .iter()
            .zip(&other)
            .map(|(d, s)| {
                let mut d = d.clone();
                // Times change; the rerun behaviour is not a time and stays.
                d.schedule = Schedule { rerun: d.schedule.rerun, ..s.clone() };
                d
            })
            .collect();
        let a = req.decide(&catalog_with(deployments));
        let b = req.decide(&catalog_with(rescheduled));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn every_deployment_is_evaluated_once_and_admitted_ones_are_what_is_offered(
        deployments in arb_deployments(),
        req in arb_req(arb_context()),
    ) {
        let catalog = catalog_with(deployments);
        let d = req.decide(&catalog);
        prop_assert_eq!(d.evaluations.len(), catalog.deployments.len());
        let mut admitted: Vec<DeploymentId> = d
            .evaluations
            .iter()
            .filter(|e| e.admitted)
            .map(|e| e.deployment_id)
            .collect();
        admitted.sort();
        let mut offered: Vec<DeploymentId> = match &d.action {
            Action::RunUnattended { deployment, .. } => vec![*deployment],
            Action::Menu { entries, .. } => entries.clone(),
            Action::NoDeployment { .. } => vec![],
        };
        offered.sort();
        prop_assert_eq!(admitted, offered);
        if let Action::NoDeployment { .. } = d.action {
            prop_assert!(!d.password_required);
        }
    }
}
