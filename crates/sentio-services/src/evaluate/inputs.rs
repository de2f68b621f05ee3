//! The CSV files `sentio evaluate --csv` is given: files as named, directories as their `*.csv`
//! files in natural order.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The labelled CSV files named by `inputs`: files as given, directories as their `*.csv` files
/// in natural order (`2.csv` before `10.csv`).
pub fn list_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("listing {}", input.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("listing {}", input.display()))?;
            found.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "csv"));
            found.sort_by_key(|p| natural_key(p));
            anyhow::ensure!(!found.is_empty(), "{} holds no .csv files", input.display());
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn natural_key(path: &Path) -> (String, u64, String) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let digits: String = stem.chars().rev().take_while(char::is_ascii_digit).collect();
    let digits: String = digits.chars().rev().collect();
    let prefix = stem[..stem.len() - digits.len()].to_owned();
    (prefix, digits.parse().unwrap_or(0), stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_list_in_natural_order() {
        let mut v = vec![PathBuf::from("d/10.csv"), PathBuf::from("d/2.csv"), "d/a.csv".into()];
        v.sort_by_key(|p| natural_key(p));
        assert_eq!(v, [PathBuf::from("d/2.csv"), "d/10.csv".into(), "d/a.csv".into()]);
    }
}
