//! The catalog with indexes, for the boot path: devices by name, SMBIOS UUID and MAC,
//! collections and their members, deployments by collection, and the objects a deployment
//! names, each found in constant time. A PXE decision then costs the same whether the catalog
//! holds 10 devices or 100,000.
//!
//! [`CatalogView`] is what the decision reads: a plain [`Catalog`] (every lookup scans, as
//! `explain` and the checks use it) or an [`IndexedCatalog`]. Both answer every lookup the
//! same way (docs/site-file.md: UUID first, then MAC, the smallest device name on a tie; the
//! first object of an id in catalog order).

use std::collections::{HashMap, HashSet};

use super::membership::MachineIdentity;
use super::model::{
    BootImage, Catalog, Collection, CollectionKind, Deployment, Device, TaskSequence,
};
use netdeploy_wire::{Mac, SmbiosUuid};

/// An immutable catalog and its indexes, built once per catalog change.
#[derive(Debug, Default)]
pub struct IndexedCatalog {
    catalog: Catalog,
    devices: HashMap<String, usize>,
    device_by_uuid: HashMap<SmbiosUuid, usize>,
    device_by_mac: HashMap<Mac, usize>,
    collections: HashMap<String, usize>,
    /// The device names each custom collection holds, by collection position.
    members: HashMap<usize, HashSet<String>>,
    /// The custom collections naming each device, by collection position.
    collections_of: HashMap<String, Vec<usize>>,
    /// The built-in collections (All Systems, Unknown Computers), by position.
    builtin: Vec<usize>,
    /// Deployment positions by the collection id they target, highest id first.
    deployments_by_collection: HashMap<String, Vec<usize>>,
    deployments: HashMap<super::DeploymentId, usize>,
    task_sequences: HashMap<String, usize>,
    boot_images: HashMap<String, usize>,
    /// Deployments whose collection does not exist: every machine evaluates them (the
    /// decision reports the unresolved reference).
    unresolved: Vec<usize>,
}

/// Maps each key to the position of its first object, as `Iterator::find` would find it.
fn first_positions<'a, K: std::hash::Hash + Eq>(
    keys: impl Iterator<Item = K> + 'a,
) -> HashMap<K, usize> {
    let mut out = HashMap::new();
    for (i, k) in keys.enumerate() {
        out.entry(k).or_insert(i);
    }
    out
}

impl IndexedCatalog {
    /// Indexes a catalog.
    pub fn new(catalog: Catalog) -> IndexedCatalog {
        let devices = first_positions(catalog.devices.iter().map(|d| d.name.clone()));
        // Several devices with one UUID or MAC (an inconsistent catalog): the smallest name wins.
        let mut device_by_uuid: HashMap<SmbiosUuid, usize> = HashMap::new();
        let mut device_by_mac: HashMap<Mac, usize> = HashMap::new();
        let smaller = |slot: &mut usize, i: usize, all: &[Device]| {
            if all[i].name < all[*slot].name {
                *slot = i;
            }
        };
        for (i, d) in catalog.devices.iter().enumerate() {
            if let Some(u) = d.uuid {
                device_by_uuid
                    .entry(u)
                    .and_modify(|s| smaller(s, i, &catalog.devices))
                    .or_insert(i);
            }
            for m in &d.macs {
                device_by_mac
                    .entry(*m)
                    .and_modify(|s| smaller(s, i, &catalog.devices))
                    .or_insert(i);
            }
        }
        let collections = first_positions(catalog.collections.iter().map(|c| c.id.clone()));
        let members = catalog
            .collections
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.kind {
                CollectionKind::Custom { members } => Some((i, members.iter().cloned().collect())),
                _ => None,
            })
            .collect();
        let mut collections_of: HashMap<String, Vec<usize>> = HashMap::new();
        let mut builtin = Vec::new();
        for (i, c) in catalog.collections.iter().enumerate() {
            // Only the first collection of an id is the one deployments resolve to.
            if collections.get(&c.id) != Some(&i) {
                continue;
            }
            match &c.kind {
                CollectionKind::Custom { members } => {
                    for m in members {
                        collections_of.entry(m.clone()).or_default().push(i);
                    }
                }
                _ => builtin.push(i),
            }
        }
        let mut deployments_by_collection: HashMap<String, Vec<usize>> = HashMap::new();
        let mut unresolved = Vec::new();
        for (i, d) in catalog.deployments.iter().enumerate() {
            if collections.contains_key(&d.collection) {
                deployments_by_collection
                    .entry(d.collection.clone())
                    .or_default()
                    .push(i);
            } else {
                unresolved.push(i);
            }
        }
        IndexedCatalog {
            deployments: first_positions(catalog.deployments.iter().map(|d| d.id)),
            task_sequences: first_positions(catalog.task_sequences.iter().map(|t| t.id.clone())),
            boot_images: first_positions(catalog.boot_images.iter().map(|b| b.id.clone())),
            devices,
            device_by_uuid,
            device_by_mac,
            collections,
            members,
            collections_of,
            builtin,
            deployments_by_collection,
            unresolved,
            catalog,
        }
    }

    /// The catalog indexed.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// The catalog as the decision reads it: scanned, or through its indexes.
#[derive(Debug, Clone, Copy)]
pub enum CatalogView<'a> {
    /// Every lookup scans the catalog's lists.
    Plain(&'a Catalog),
    /// Every lookup goes through an index.
    Indexed(&'a IndexedCatalog),
}

impl<'a> From<&'a Catalog> for CatalogView<'a> {
    fn from(c: &'a Catalog) -> CatalogView<'a> {
        CatalogView::Plain(c)
    }
}

impl<'a> From<&'a IndexedCatalog> for CatalogView<'a> {
    fn from(c: &'a IndexedCatalog) -> CatalogView<'a> {
        CatalogView::Indexed(c)
    }
}

impl<'a> CatalogView<'a> {
    /// The catalog itself.
    pub fn catalog(self) -> &'a Catalog {
        match self {
            CatalogView::Plain(c) => c,
            CatalogView::Indexed(ix) => &ix.catalog,
        }
    }

    /// [`Catalog::match_device`].
    pub fn match_device(self, machine: &MachineIdentity) -> Option<&'a Device> {
        let ix = match self {
            CatalogView::Plain(c) => return c.match_device(machine),
            CatalogView::Indexed(ix) => ix,
        };
        let by_uuid = machine.uuid.and_then(|u| ix.device_by_uuid.get(&u));
        let hit = by_uuid.or_else(|| machine.mac.and_then(|m| ix.device_by_mac.get(&m)))?;
        Some(&ix.catalog.devices[*hit])
    }

    /// [`Catalog::device`].
    pub fn device(self, name: &str) -> Option<&'a Device> {
        match self {
            CatalogView::Plain(c) => c.device(name),
            CatalogView::Indexed(ix) => ix.devices.get(name).map(|&i| &ix.catalog.devices[i]),
        }
    }

    /// [`Catalog::collection`].
    pub fn collection(self, id: &str) -> Option<&'a Collection> {
        match self {
            CatalogView::Plain(c) => c.collection(id),
            CatalogView::Indexed(ix) => ix.collections.get(id).map(|&i| &ix.catalog.collections[i]),
        }
    }

    /// [`Catalog::holds`].
    pub fn holds(self, collection: &Collection, device: Option<&Device>) -> bool {
        let ix = match self {
            CatalogView::Plain(c) => return c.holds(collection, device),
            CatalogView::Indexed(ix) => ix,
        };
        match (&collection.kind, device) {
            (CollectionKind::Custom { members }, Some(d)) => {
                // The collection given may not be the catalog's own (a caller's copy).
                match ix.collections.get(&collection.id) {
                    Some(&i) if ix.catalog.collections[i] == *collection => {
                        ix.members.get(&i).is_some_and(|m| m.contains(&d.name))
                    }
                    _ => members.contains(&d.name),
                }
            }
            _ => ix.catalog.holds(collection, device),
        }
    }

    /// [`Catalog::task_sequence`].
    pub fn task_sequence(self, id: &str) -> Option<&'a TaskSequence> {
        match self {
            CatalogView::Plain(c) => c.task_sequence(id),
            CatalogView::Indexed(ix) => ix
                .task_sequences
                .get(id)
                .map(|&i| &ix.catalog.task_sequences[i]),
        }
    }

    /// [`Catalog::boot_image`].
    pub fn boot_image(self, id: &str) -> Option<&'a BootImage> {
        match self {
            CatalogView::Plain(c) => c.boot_image(id),
            CatalogView::Indexed(ix) => ix.boot_images.get(id).map(|&i| &ix.catalog.boot_images[i]),
        }
    }

    /// [`Catalog::deployment`].
    pub fn deployment(self, id: &super::DeploymentId) -> Option<&'a Deployment> {
        match self {
            CatalogView::Plain(c) => c.deployment(id),
            CatalogView::Indexed(ix) => ix.deployments.get(id).map(|&i| &ix.catalog.deployments[i]),
        }
    }

    /// The deployments a decision for a machine matched to `device` looks at, plus `also`
    /// (a deployment the machine names): every deployment of a plain catalog; of an indexed
    /// one, those whose collection holds the machine or does not exist. A deployment left out
    /// would only be excluded by rule 1 (docs/selection-rules.md), so the action is the same.
    pub fn deployments_for(
        self,
        device: Option<&Device>,
        also: Option<super::DeploymentId>,
    ) -> Vec<&'a Deployment> {
        let ix = match self {
            CatalogView::Plain(c) => return c.deployments.iter().collect(),
            CatalogView::Indexed(ix) => ix,
        };
        let mut at: Vec<usize> = ix.unresolved.clone();
        let custom = device
            .and_then(|d| ix.collections_of.get(&d.name))
            .into_iter()
            .flatten();
        for &i in ix.builtin.iter().chain(custom) {
            let c = &ix.catalog.collections[i];
            if ix.catalog.holds(c, device) {
                if let Some(d) = ix.deployments_by_collection.get(&c.id) {
                    at.extend(d);
                }
            }
        }
        if let Some(i) = also.and_then(|id| ix.deployments.get(&id)) {
            at.push(*i);
        }
        at.sort_unstable();
        at.dedup();
        at.into_iter().map(|i| &ix.catalog.deployments[i]).collect()
    }
}
