//! Artifacts through the server's `mlflow-artifacts` proxy:
//! `PUT|GET /api/2.0/mlflow-artifacts/artifacts/<path>` for a file and
//! `GET /api/2.0/mlflow-artifacts/artifacts?path=<dir>` for a folder's listing.
//!
//! A run's artifact URI is `mlflow-artifacts:/<experiment>/<run>/artifacts` (or with a host,
//! `mlflow-artifacts://host:port/…`); the proxy path is what follows the scheme and authority.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::MlflowTracking;
use super::wire::ListArtifactsResponse;
use crate::{Result, TrackingError, validate};

/// Files sent or fetched at once.
const CONCURRENCY: usize = 4;

/// `uri` with the relative `path` appended.
pub(super) fn join(uri: &str, path: &str) -> String {
    let path = path.trim_matches('/');
    if path.is_empty() { uri.to_owned() } else { format!("{}/{path}", uri.trim_end_matches('/')) }
}

/// The proxy path of an `mlflow-artifacts:` URI.
fn proxy_path(op: &'static str, uri: &str) -> Result<String> {
    let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
        return Err(TrackingError::ArtifactUri {
            op,
            uri: uri.to_owned(),
            reason: "only mlflow-artifacts: URIs can be used over HTTP; start the server with \
                     artifact serving (`mlflow server --artifacts-destination <dir>`)",
        });
    };
    let rest = match rest.strip_prefix("//") {
        // mlflow-artifacts://host:port/path: the path goes to the server this client talks to.
        Some(with_authority) => with_authority.split_once('/').map_or("", |(_, path)| path),
        None => rest,
    };
    Ok(rest.trim_matches('/').to_owned())
}

impl MlflowTracking {
    fn artifact_url(&self, path: &str) -> reqwest::Url {
        let segments = path.split('/').filter(|s| !s.is_empty());
        self.url(["api", "2.0", "mlflow-artifacts", "artifacts"].into_iter().chain(segments))
    }

    /// Uploads the files under `local_dir` to the folder `uri` (an `mlflow-artifacts:` URI).
    pub(super) async fn upload_tree(
        &self,
        op: &'static str,
        uri: &str,
        local_dir: &Path,
    ) -> Result<()> {
        let base = proxy_path(op, uri)?;
        if !local_dir.is_dir() {
            return Err(TrackingError::NotFound {
                op,
                what: format!("folder {}", local_dir.display()),
            });
        }
        let dir = local_dir.to_owned();
        let files = tokio::task::spawn_blocking(move || crate::local::files_under(op, &dir))
            .await
            .map_err(|source| TrackingError::Task { op, source })??;
        futures::stream::iter(files)
            .map(|(rel, path)| {
                let remote = join(&base, &rel);
                async move {
                    let body =
                        Bytes::from(tokio::fs::read(&path).await.map_err(|source| {
                            TrackingError::Io { op, path: path.clone(), source }
                        })?);
                    let url = self.artifact_url(&remote);
                    self.send(op, || self.http.put(url.clone()).body(body.clone())).await?;
                    Ok::<_, TrackingError>(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The entries of the remote folder `path` (a proxy path): (name, is_dir). Empty for a file
    /// or a missing folder.
    async fn list(&self, op: &'static str, path: &str) -> Result<Vec<(String, bool)>> {
        let url = self.url(["api", "2.0", "mlflow-artifacts", "artifacts"]);
        let response =
            self.send(op, || self.http.get(url.clone()).query(&[("path", path)])).await?;
        let listing: ListArtifactsResponse = self.decode(op, response).await?;
        listing
            .files
            .into_iter()
            .map(|f| {
                // Only the last part: the server answers with names relative to `path`.
                let name = f.path.rsplit('/').next().unwrap_or_default().to_owned();
                validate::artifact_path(op, &name)?;
                Ok((name, f.is_dir))
            })
            .filter(|entry| !matches!(entry, Ok((name, _)) if name.is_empty()))
            .collect()
    }

    /// Every file under the remote folder `path`, relative to it.
    async fn list_files(&self, op: &'static str, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(rel) = pending.pop() {
            for (name, is_dir) in self.list(op, &join(path, &rel)).await? {
                let child = join(&rel, &name);
                if is_dir { pending.push(child) } else { out.push(child) }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Downloads `path` under the artifact folder `uri` into `local_dir` (a folder's contents
    /// land directly there, a file as `local_dir/<name>`).
    pub(super) async fn download_tree(
        &self,
        op: &'static str,
        uri: &str,
        path: &str,
        local_dir: &Path,
    ) -> Result<PathBuf> {
        let remote = join(&proxy_path(op, uri)?, path);
        let files = self.list_files(op, &remote).await?;
        if files.is_empty() && !path.trim_matches('/').is_empty() {
            // Not a folder with files: a single file, or nothing.
            let name = path.trim_matches('/').rsplit('/').next().unwrap_or_default();
            let target = local_dir.join(name);
            self.fetch(op, &remote, &target).await?;
            return Ok(target);
        }
        tokio::fs::create_dir_all(local_dir).await.map_err(|source| TrackingError::Io {
            op,
            path: local_dir.to_owned(),
            source,
        })?;
        futures::stream::iter(files)
            .map(|rel| {
                let target = rel.split('/').fold(local_dir.to_owned(), |p, part| p.join(part));
                let remote = join(&remote, &rel);
                async move { self.fetch(op, &remote, &target).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(local_dir.to_owned())
    }

    /// Streams the remote file `path` into `target` (through a temporary file and a rename).
    async fn fetch(&self, op: &'static str, path: &str, target: &Path) -> Result<()> {
        let url = self.artifact_url(path);
        let mut response = match self.send(op, || self.http.get(url.clone())).await {
            Err(e) if e.is_not_found() => {
                return Err(TrackingError::NotFound { op, what: format!("artifact {path:?}") });
            }
            other => other?,
        };
        let io = |source| TrackingError::Io { op, path: target.to_owned(), source };
        let dir = target.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(".sentio-tmp-{:032x}", rand::random::<u128>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
            while let Some(chunk) = response.chunk().await.map_err(|source| {
                TrackingError::Unreachable { op, uri: self.base.to_string(), source }
            })? {
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            tokio::fs::rename(&tmp, target).await.map_err(io)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn proxy_paths() {
        assert_eq!(
            proxy_path("t", "mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_path("t", "mlflow-artifacts://host:5000/1/models/m-1/artifacts").unwrap(),
            "1/models/m-1/artifacts"
        );
        assert!(proxy_path("t", "s3://bucket/x").is_err());
        assert_eq!(
            join("mlflow-artifacts:/1/a/artifacts", "model/x"),
            "mlflow-artifacts:/1/a/artifacts/model/x"
        );
        assert_eq!(join("u/", ""), "u/");
    }
}
