//! Deployment templates (docs/deployment-checks.md): settings saved under a name and reused.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::checks::NewDeployment;
use crate::catalog::{AvailableTo, DeploymentOption, Purpose, Schedule};

/// Deployment settings saved under a name for reuse (docs/deployment-checks.md).
///
/// A template does not keep the schedule (times, deadlines and rerun behaviour), the
/// software-installation setting or pre-download: they are set again on every deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentTemplate {
    /// The name it is saved under.
    pub name: String,
    /// The target collection.
    pub collection: String,
    /// Available or required.
    pub purpose: Purpose,
    /// Clients, media and PXE, hidden or not.
    pub available_to: AvailableTo,
    /// How content reaches the boot environment.
    #[serde(default)]
    pub option: DeploymentOption,
    /// Images may come by multicast.
    #[serde(default)]
    pub multicast: bool,
    /// Send wake-on-LAN packets to the collection.
    #[serde(default)]
    pub wake_on_lan: bool,
    /// Free text for operators.
    #[serde(default)]
    pub comments: String,
}

impl DeploymentTemplate {
    /// Saves the settings of a deployment request under `name`.
    pub fn save(name: &str, from: &NewDeployment) -> DeploymentTemplate {
        DeploymentTemplate {
            name: name.to_string(),
            collection: from.collection.clone(),
            purpose: from.purpose,
            available_to: from.available_to,
            option: from.option,
            multicast: from.multicast,
            wake_on_lan: from.wake_on_lan,
            comments: from.comments.clone(),
        }
    }
}

/// A new deployment of `task_sequence` with a template's settings. The schedule, the
/// software-installation setting and pre-download are left at their defaults (unscheduled,
/// off, off) for the operator to set; high-risk acceptance is never carried over.
pub fn apply_template(template: &DeploymentTemplate, task_sequence: &str) -> NewDeployment {
    NewDeployment {
        task_sequence: task_sequence.to_string(),
        collection: template.collection.clone(),
        purpose: template.purpose,
        available_to: template.available_to,
        schedule: Schedule::default(),
        option: template.option,
        multicast: template.multicast,
        wake_on_lan: template.wake_on_lan,
        comments: template.comments.clone(),
        software_installation: false,
        pre_download: false,
        accept_high_risk: false,
        available_content: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::AvailableTo::*;
    use crate::catalog::Purpose::Required;
    use crate::decision::checks::tests::new;

    #[test]
    fn template_does_not_keep_schedule_software_installation_or_pre_download() {
        let original = NewDeployment {
            available_to: ClientsMediaPxe,
            schedule: Schedule {
                available_at: Some(10),
                expires_at: Some(20),
                assignments: vec![15],
                rerun: crate::catalog::Rerun::Never,
            },
            wake_on_lan: true,
            comments: "lab rebuild".into(),
            software_installation: true,
            pre_download: true,
            accept_high_risk: true,
            ..new("os", "SIZED", Required)
        };
        let template = DeploymentTemplate::save("rebuild", &original);
        let json = serde_json::to_string(&template).unwrap();
        assert_eq!(
            serde_json::from_str::<DeploymentTemplate>(&json).unwrap(),
            template
        );
        let applied = apply_template(&template, "tools");
        assert_eq!(applied.task_sequence, "tools");
        assert_eq!(applied.collection, "SIZED");
        assert_eq!(applied.purpose, Required);
        assert_eq!(applied.available_to, ClientsMediaPxe);
        assert!(applied.wake_on_lan);
        assert_eq!(applied.comments, "lab rebuild");
        assert_eq!(applied.schedule, Schedule::default());
        assert!(!applied.software_installation);
        assert!(!applied.pre_download);
        assert!(!applied.accept_high_risk);
    }
}
