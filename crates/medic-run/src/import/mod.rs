//! `medic inventory import`: the Manager's computers as an inventory, merged with an
//! Ansible inventory's hosts when one is given (`ansible.rs`). Everything is checked before
//! the Manager is asked (the output path, the Ansible files, the relay-group hints), and
//! the text is one medic would load. The caller shows progress and writes the text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_config::ansible::AnsibleInventory;
use medic_drivers::DsmClient;
use medic_drivers::dsm::{ImportOptions, Imported, RelayGroupHintError};

use crate::conn::dsm_client_with;
use crate::{Error, bad, internal};

mod ansible;

pub use ansible::MergeReport;

/// What `medic inventory import` was asked.
pub struct Request<'a> {
    /// The Manager's URL.
    pub dsm: &'a str,
    pub dsm_ca: Option<&'a Path>,
    pub dsm_api_key_file: Option<&'a Path>,
    /// Each request's connect and read timeout.
    pub timeout: Duration,
    pub manager_name: Option<&'a str>,
    /// `--relay-group ID=NAME[,offline][,bundle_source=HOST]`, as written.
    pub relay_groups: &'a [String],
    /// `--ansible PATH`: a file or a directory of them.
    pub ansible: Option<&'a Path>,
    /// `--out`, else standard output.
    pub out: Option<&'a Path>,
}

/// An import ready to ask the Manager.
pub struct Import {
    client: DsmClient,
    opts: ImportOptions,
    ansible: Option<(AnsibleInventory, PathBuf)>,
}

/// The imported inventory's text, and what the Ansible merge did (if there was one).
pub struct Output {
    pub text: String,
    pub ansible: Option<MergeReport>,
}

impl Import {
    /// Checks the request: the output is none of the inputs and can be written, the
    /// Ansible inventory reads (bad input is refused before the Manager is asked anything),
    /// the client's settings and the relay-group hints. Call it inside [`crate::runtime`].
    pub fn prepare(req: &Request<'_>) -> Result<Import, Error> {
        if let Some(out) = req.out {
            crate::files::refuse_overwriting_inputs(
                "--out",
                out,
                &[
                    ("--dsm-ca", req.dsm_ca),
                    ("--dsm-api-key-file", req.dsm_api_key_file),
                    ("--ansible", req.ansible),
                ],
            )?;
            crate::files::check_output("--out", out)?;
        }
        let ansible = req
            .ansible
            .map(|p| Ok::<_, Error>((ansible::read(p)?, p.to_path_buf())))
            .transpose()?;
        let timeout = req.timeout;
        let client = dsm_client_with(req.dsm, req.dsm_ca, req.dsm_api_key_file, |cfg| {
            cfg.connect_timeout = timeout;
            cfg.read_timeout = timeout;
            // One retry: a Manager that does not answer fails the import in about two
            // timeouts, not after eight backoffs. A 429 has its own budget.
            cfg.retry.max_retries = cfg.retry.max_retries.min(1);
        })?;
        let mut opts = ImportOptions::for_client(&client);
        if let Some(n) = req.manager_name {
            n.clone_into(&mut opts.manager_name);
        }
        for h in req.relay_groups {
            opts.relay_groups
                .push(h.parse().map_err(|e: RelayGroupHintError| {
                    bad(
                        "--relay-group",
                        e.to_string(),
                        "write ID=NAME[,offline][,bundle_source=HOST]",
                    )
                })?);
        }
        Ok(Import {
            client,
            opts,
            ansible,
        })
    }

    /// The client, for progress (its URL, the requests sent so far).
    pub fn client(&self) -> &DsmClient {
        &self.client
    }

    /// Reads the Manager's computers.
    pub async fn fetch(&self) -> Result<Imported, Error> {
        medic_drivers::import_inventory(&self.client, &self.opts)
            .await
            .map_err(|e| {
                internal(format!(
                    "the import from {} failed: {e}",
                    self.client.base_url()
                ))
            })
    }

    /// The inventory's text: the Manager's import, merged with the Ansible inventory's
    /// hosts when there is one. Use [`Output::check`] before writing it.
    pub fn finish(&self, imported: &Imported) -> Output {
        match &self.ansible {
            Some((inv, path)) => ansible::merged(imported, inv, path),
            None => Output {
                text: medic_config::write_inventory(&imported.inventory, &imported.comments),
                ansible: None,
            },
        }
    }
}

impl Output {
    /// Never write an inventory that medic itself would refuse.
    pub fn check(&self) -> Result<(), Error> {
        medic_config::load_inventory("imported inventory", &self.text)
            .map(|_| ())
            .map_err(Error::BadInput)
    }
}
