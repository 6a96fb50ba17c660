//! `fulcrum check-policy`: validates policy files and explains every problem.

use std::io::{self, Read, Write};
use std::path::Path;

use fulcrum_policies::document::check_document;

use crate::manifest::read_documents;

/// Checks every policy in `files` (`-` reads standard input) and writes one line per
/// valid policy and one line per problem to `out`. Returns whether every policy is valid.
///
/// Lines look like `FILE: NAME: valid` or `FILE: NAME (document N): PATH: MESSAGE`.
/// Unreadable files and YAML errors are reported the same way and count as invalid.
pub fn check_files(files: &[impl AsRef<Path>], out: &mut impl Write) -> io::Result<bool> {
    let mut all_valid = true;
    for file in files {
        let file = file.as_ref();
        let shown = file.display();
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(file)
        };
        let text = match text {
            Ok(text) => text,
            Err(err) => {
                writeln!(out, "{shown}: cannot read: {err}")?;
                all_valid = false;
                continue;
            }
        };
        let documents = match read_documents(&text) {
            Ok(documents) => documents,
            Err(err) => {
                writeln!(out, "{shown}: {err}")?;
                all_valid = false;
                continue;
            }
        };
        if documents.is_empty() {
            writeln!(out, "{shown}: no policy found")?;
            all_valid = false;
        }
        for doc in &documents {
            let name = doc
                .value
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("(unnamed)");
            match check_document(&doc.value) {
                Ok(_) => writeln!(out, "{shown}: {name}: valid")?,
                Err(errors) => {
                    all_valid = false;
                    for error in errors {
                        writeln!(out, "{shown}: {name} (document {}): {error}", doc.position)?;
                    }
                }
            }
        }
    }
    Ok(all_valid)
}
