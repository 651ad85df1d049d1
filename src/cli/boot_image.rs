//! `netdeploy boot-image`: what PXE and media start.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::*;
use netdeploy::content::Library;

use super::object::{object, Kind, ObjectCommand};
use super::{operator, DataDir};

#[derive(Debug, Subcommand)]
pub enum BootImageCommand {
    /// Make a pre-production boot image the production one it replaces (docs/status.md): the
    /// production image takes its files and command line, and the pre-production one goes.
    Promote { id: String },
    /// Import a Linux boot image (kernel and initrd are hashed into the content library).
    Create {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        arch: ImageArch,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: Option<PathBuf>,
        #[arg(long, default_value = "")]
        cmdline: String,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

pub fn boot_image(dd: &DataDir, cmd: BootImageCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        BootImageCommand::Object(o) => object(&store, Kind::BootImage, o),
        BootImageCommand::Promote { id } => {
            let pre: BootImage = store
                .get("boot_image", &id)?
                .ok_or_else(|| anyhow::anyhow!("no boot image {id:?}"))?;
            let Some(target) = pre.replaces.clone().filter(|_| pre.pre_production) else {
                bail!("boot image {id} is not a pre-production image that replaces another");
            };
            let mut prod: BootImage = store
                .get("boot_image", &target)?
                .ok_or_else(|| anyhow::anyhow!("the production boot image {target:?} is gone"))?;
            prod.files = pre.files.clone();
            prod.cmdline = pre.cmdline.clone();
            store.transaction(|tx| {
                tx.put("boot_image", &target, &prod, now())?;
                tx.delete("boot_image", &id)?;
                Ok(())
            })?;
            store.add_status(&netdeploy::store::StatusMessage {
                seq: 0,
                at: now(),
                source: "server".into(),
                kind: "boot-image-promoted".into(),
                identity: None,
                device: None,
                deployment: None,
                body: serde_json::json!({ "from": id, "to": target, "who": operator() }),
            })?;
            println!("boot image {id} promoted: {target} now boots its files");
            Ok(())
        }
        BootImageCommand::Create {
            id,
            arch,
            kernel,
            initrd,
            cmdline,
        } => {
            if let Some(problem) = netdeploy::catalog::kernel_cmdline_problem(&cmdline) {
                bail!("--cmdline {problem}");
            }
            let lib = Library::new(&dd.data_dir);
            let mut files = vec![lib.import(&kernel, "kernel")?];
            if let Some(i) = initrd {
                files.push(lib.import(&i, "initrd")?);
            }
            let b = BootImage {
                id: id.clone(),
                arch,
                kind: BootImageKind::Linux,
                files,
                cmdline,
                pre_production: false,
                replaces: None,
            };
            store.put("boot_image", &id, &b, now())?;
            println!("boot image {id} saved");
            Ok(())
        }
    }
}
