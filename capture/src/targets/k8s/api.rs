//! The Kubernetes API side of `--ns`: which pods of a namespace run on this
//! node, narrowed by name, label selector and container, and how that set
//! changes while the capture runs.

use std::path::PathBuf;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    api::{Api, ListParams},
    config::{Config, KubeConfigOptions, Kubeconfig},
    runtime::watcher,
    Client,
};

use super::cgroup::ContainerId;

/// What the user asked for with `--ns`, `--pod`, `-l`, `--container`,
/// `--kubeconfig` and `--node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub namespace: String,
    pub pods: Vec<String>,
    pub selector: Option<String>,
    pub containers: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub node: String,
}

impl Selection {
    /// `spec.nodeName=<node>`: the API server filters pods by node.
    fn field_selector(&self) -> String {
        format!("spec.nodeName={}", self.node)
    }

    fn list_params(&self) -> ListParams {
        let params = ListParams::default().fields(&self.field_selector());
        match &self.selector {
            Some(labels) => params.labels(labels),
            None => params,
        }
    }

    fn watcher_config(&self) -> watcher::Config {
        let config = watcher::Config::default().fields(&self.field_selector());
        match &self.selector {
            Some(labels) => config.labels(labels),
            None => config,
        }
    }

    fn wants_pod(&self, name: &str) -> bool {
        self.pods.is_empty() || self.pods.iter().any(|p| p == name)
    }

    fn wants_container(&self, name: &str) -> bool {
        self.containers.is_empty() || self.containers.iter().any(|c| c == name)
    }

    fn described(&self) -> String {
        let mut out = format!("namespace `{}`", self.namespace);
        if let Some(labels) = &self.selector {
            out.push_str(&format!(" with labels `{labels}`"));
        }
        out
    }
}

/// Errors a user can act on, each one line.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("no Kubernetes configuration found ({0}); pass --kubeconfig PATH or set KUBECONFIG")]
    NoConfig(String),
    #[error("failed to read the kubeconfig `{path}`: {reason}")]
    BadKubeconfig { path: PathBuf, reason: String },
    #[error("the Kubernetes API server at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the Kubernetes API server at {url} refused to list pods in namespace `{namespace}`: \
         {code} {message}; podtap needs get, list and watch on pods (scripts/k8s/rbac.yaml)"
    )]
    Forbidden { url: String, namespace: String, code: u16, message: String },
    #[error("the Kubernetes API server at {url} answered {code}: {message}")]
    Api { url: String, code: u16, message: String },
    #[error("no pods of {what} run on node `{node}` (--node or NODE_NAME choose the node)")]
    NoPods { what: String, node: String },
    #[error("pod `{name}` is not in namespace `{namespace}`")]
    PodNotFound { name: String, namespace: String },
    #[error("pod `{name}` of namespace `{namespace}` runs on node `{on}`, not on `{node}`")]
    PodElsewhere { name: String, namespace: String, on: String, node: String },
    #[error("no container named {names} in the selected pods")]
    NoContainer { names: String },
}

impl K8sError {
    /// The selection names nothing that exists here (exit code 2), as
    /// opposed to a cluster that cannot be asked (exit code 1).
    pub fn is_missing_target(&self) -> bool {
        matches!(
            self,
            Self::NoPods { .. }
                | Self::PodNotFound { .. }
                | Self::PodElsewhere { .. }
                | Self::NoContainer { .. }
        )
    }
}

/// A client for the API server, configured as SPEC §2 says: `--kubeconfig`
/// when given, else in-cluster, else `$KUBECONFIG`, else `~/.kube/config`.
pub async fn connect(selection: &Selection) -> Result<(Client, String), K8sError> {
    let options = KubeConfigOptions::default();
    let config = match &selection.kubeconfig {
        Some(path) => {
            let bad = |reason: String| K8sError::BadKubeconfig { path: path.clone(), reason };
            let file = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            Config::from_custom_kubeconfig(file, &options).await.map_err(|e| bad(e.to_string()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(in_cluster) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| K8sError::NoConfig(format!("not in a cluster ({in_cluster}); {e}")))?,
        },
    };
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| K8sError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    Ok((client, url))
}

fn api_error(e: kube::Error, url: &str, namespace: &str) -> K8sError {
    match e {
        kube::Error::Api(status) if matches!(status.code, 401 | 403) => K8sError::Forbidden {
            url: url.to_string(),
            namespace: namespace.to_string(),
            code: status.code,
            message: status.message,
        },
        kube::Error::Api(status) => {
            K8sError::Api { url: url.to_string(), code: status.code, message: status.message }
        }
        other => K8sError::Unreachable { url: url.to_string(), reason: error_chain(&other) },
    }
}

/// An error and its causes on one line (`a: b: c`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// One container to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerTarget {
    pub name: String,
    pub id: ContainerId,
}

/// One pod to capture: its identity and its running containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTarget {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub containers: Vec<ContainerTarget>,
}

/// The pod as a target, if the selection wants it: its containers that
/// the selection names and that have started (a `containerID`).
pub fn pod_target(selection: &Selection, pod: &Pod) -> Option<PodTarget> {
    let meta = &pod.metadata;
    let name = meta.name.clone()?;
    if !selection.wants_pod(&name) {
        return None;
    }
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| selection.wants_container(&c.name))
        .filter_map(|c| {
            let id = ContainerId::parse(c.container_id.as_deref()?)?;
            Some(ContainerTarget { name: c.name.clone(), id })
        })
        .collect();
    Some(PodTarget {
        namespace: meta.namespace.clone().unwrap_or_else(|| selection.namespace.clone()),
        name,
        uid: meta.uid.clone()?,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        containers,
    })
}

/// The selected pods on this node now. Fails, naming what is missing, when
/// nothing matches, a `--pod` is not there, or no pod has a `--container`.
pub async fn list(
    client: &Client,
    url: &str,
    selection: &Selection,
) -> Result<Vec<PodTarget>, K8sError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &selection.namespace);
    let ns = &selection.namespace;
    let pods = api.list(&selection.list_params()).await.map_err(|e| api_error(e, url, ns))?;
    let targets: Vec<PodTarget> =
        pods.items.iter().filter_map(|p| pod_target(selection, p)).collect();
    for name in &selection.pods {
        if targets.iter().any(|t| &t.name == name) {
            continue;
        }
        // Say where it is, if it is anywhere.
        let pod = api.get_opt(name).await.map_err(|e| api_error(e, url, ns))?;
        return Err(match pod.and_then(|p| p.spec).and_then(|s| s.node_name) {
            Some(on) => K8sError::PodElsewhere {
                name: name.clone(),
                namespace: ns.clone(),
                on,
                node: selection.node.clone(),
            },
            None => K8sError::PodNotFound { name: name.clone(), namespace: ns.clone() },
        });
    }
    if targets.is_empty() {
        return Err(K8sError::NoPods { what: selection.described(), node: selection.node.clone() });
    }
    if !selection.containers.is_empty() && targets.iter().all(|t| t.containers.is_empty()) {
        let names: Vec<String> = selection.containers.iter().map(|c| format!("`{c}`")).collect();
        return Err(K8sError::NoContainer { names: names.join(" or ") });
    }
    Ok(targets)
}

/// A change to the selected pods during the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodChange {
    /// A pod appeared, or its containers changed (started, restarted).
    Seen(PodTarget),
    /// A pod went away.
    Gone { namespace: String, name: String, uid: String },
    /// The watch failed; it is retried.
    Trouble(String),
}

/// The selected pods' changes, from a watch that reconnects by itself.
pub fn watch(client: Client, selection: Selection) -> impl Stream<Item = PodChange> {
    let api: Api<Pod> = Api::namespaced(client, &selection.namespace);
    let config = selection.watcher_config();
    watcher(api, config).filter_map(move |event| {
        let change = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                pod_target(&selection, &pod).map(PodChange::Seen)
            }
            Ok(watcher::Event::Delete(pod)) => pod_target(&selection, &pod)
                .map(|t| PodChange::Gone { namespace: t.namespace, name: t.name, uid: t.uid }),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(PodChange::Trouble(error_chain(&e))),
        };
        std::future::ready(change)
    })
}
