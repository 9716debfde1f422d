//! Generated Rust types for the subset of the Talos v1.11 gRPC API that Runbook uses.
//!
//! # Why this crate exists
//!
//! Runbook talks to real Talos nodes (apid on port 50000) and, in tests, to its own simulated
//! Talos server. Both sides must speak exactly the wire format a real `talosctl` and a real node
//! use. The `.proto` files under `proto/` are the project's own, written from the public Talos
//! (`siderolabs/talos` v1.11.6) and COSI (`cosi-project/specification` a25fac0) sources with the
//! **same packages, service names, message names, enum values and field numbers**, so the full
//! gRPC method paths (e.g. `/machine.MachineService/EtcdSnapshot`,
//! `/cosi.resource.State/Watch`) and every encoded byte match upstream. Only the subset Runbook
//! needs is mirrored; see `proto/README.md` for provenance and for how to add a message.
//!
//! `build.rs` compiles every `.proto` file with `protox` (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic clients *and* servers for every service.
//!
//! # Layout
//!
//! One module per protobuf package, mirroring the package path:
//!
//! | package | module |
//! |---|---|
//! | `common` | [`common`] |
//! | `google.rpc` | [`google::rpc`] |
//! | `machine` | [`machine`] (`MachineService`) |
//! | `storage` | [`storage`] (`StorageService`) |
//! | `cosi.resource` | [`cosi::resource`] (`State` service, `Resource`) |
//! | `cosi.resource.meta` | [`cosi::resource::meta`] |
//! | `talos.resource.definitions.*` | [`talos::resource::definitions`] (resource specs) |
//! | `resource.config` | [`resource::config`] (`MachineConfigSpec`) |
//!
//! Well-known types (`google.protobuf.*`) map to [`prost_types`]; `google.protobuf.Empty`
//! becomes `()` in service signatures.
//!
//! Talos raises gRPC message limits to 32 MiB on both sides while tonic defaults to 4 MiB for
//! decoding; use [`MAX_MESSAGE_SIZE`] or the `*_client` / `*_server` helpers below, which apply it.

/// Maximum gRPC message size used by Talos on both the client and the server side
/// (`constants.GRPCMaxMessageSize = 32 * 1024 * 1024` in Talos).
pub const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Encoded `google.protobuf.FileDescriptorSet` of every `.proto` file in this crate, including
/// imported well-known types (no source info). Suitable for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/runbook_proto_descriptor.bin"));

/// Package `common`: metadata, data chunks and errors shared by every Talos API.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod common {
    tonic::include_proto!("common");
}

/// Packages under `google.*` (only `google.rpc` here; `google.protobuf` is `prost_types`).
pub mod google {
    /// Package `google.rpc`: the gRPC `Status` error model.
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// Package `machine`: `MachineService` (`/machine.MachineService/*`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod machine {
    tonic::include_proto!("machine");
}

/// Package `storage`: `StorageService` (`/storage.StorageService/*`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod storage {
    tonic::include_proto!("storage");
}

/// Packages under `cosi.*`.
pub mod cosi {
    /// Package `cosi.resource`: the COSI `State` service (`/cosi.resource.State/*`) and the
    /// `Resource` wire form.
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
    pub mod resource {
        tonic::include_proto!("cosi.resource");

        /// Package `cosi.resource.meta`: specs of the `meta` namespace (resource definitions).
        #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
        pub mod meta {
            tonic::include_proto!("cosi.resource.meta");
        }
    }
}

/// Packages under `talos.*`.
pub mod talos {
    /// Packages under `talos.resource.*`.
    pub mod resource {
        /// Packages `talos.resource.definitions.*`: the typed specs carried in
        /// `cosi.resource.Spec.proto_spec`.
        pub mod definitions {
            /// Package `talos.resource.definitions.block` (`Disks`, `SystemDisks`,
            /// `VolumeStatuses`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod block {
                tonic::include_proto!("talos.resource.definitions.block");
            }

            /// Package `talos.resource.definitions.cluster` (`Members`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod cluster {
                tonic::include_proto!("talos.resource.definitions.cluster");
            }

            /// Package `talos.resource.definitions.enums`.
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod enums {
                tonic::include_proto!("talos.resource.definitions.enums");
            }

            /// Package `talos.resource.definitions.etcd` (`EtcdMembers`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod etcd {
                tonic::include_proto!("talos.resource.definitions.etcd");
            }

            /// Package `talos.resource.definitions.extensions` (`ExtensionStatuses`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod extensions {
                tonic::include_proto!("talos.resource.definitions.extensions");
            }

            /// Package `talos.resource.definitions.hardware` (`PCIDevices`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod hardware {
                tonic::include_proto!("talos.resource.definitions.hardware");
            }

            /// Package `talos.resource.definitions.runtime` (`MachineStatuses`,
            /// `KernelModuleSpecs`, `LoadedKernelModules`, `Versions`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod runtime {
                tonic::include_proto!("talos.resource.definitions.runtime");
            }

            /// Package `talos.resource.definitions.v1alpha1` (`Services`).
            #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
            pub mod v1alpha1 {
                tonic::include_proto!("talos.resource.definitions.v1alpha1");
            }
        }
    }
}

/// Packages under `resource.*`.
pub mod resource {
    /// Package `resource.config` (`MachineConfigs`, `MachineTypes`).
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
    pub mod config {
        tonic::include_proto!("resource.config");
    }
}

/// Defines a `*_client` helper that wraps a transport in a generated client with Talos'
/// message size limits applied.
macro_rules! client_with_limits {
    ($(#[$doc:meta])* $name:ident, $client:ty) => {
        $(#[$doc])*
        pub fn $name<T>(inner: T) -> $client
        where
            T: tonic::client::GrpcService<tonic::body::Body>,
            T::Error: Into<tonic::codegen::StdError>,
            T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
            <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
        {
            <$client>::new(inner)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE)
        }
    };
}

/// Defines a `*_server` helper that wraps a service implementation in a generated server with
/// Talos' message size limits applied.
macro_rules! server_with_limits {
    ($(#[$doc:meta])* $name:ident, $trait:path, $server:ident) => {
        $(#[$doc])*
        pub fn $name<S: $trait>(service: S) -> $server<S> {
            $server::new(service)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE)
        }
    };
}

#[cfg(test)]
mod wire_tests;

use cosi::resource::state_server::StateServer;
use machine::machine_service_server::MachineServiceServer;
use storage::storage_service_server::StorageServiceServer;

client_with_limits!(
    /// A `MachineService` client over `inner` with 32 MiB message limits.
    machine_client,
    machine::machine_service_client::MachineServiceClient<T>
);
client_with_limits!(
    /// A `StorageService` client over `inner` with 32 MiB message limits.
    storage_client,
    storage::storage_service_client::StorageServiceClient<T>
);
client_with_limits!(
    /// A COSI `State` client over `inner` with 32 MiB message limits.
    state_client,
    cosi::resource::state_client::StateClient<T>
);
server_with_limits!(
    /// A `MachineService` server for `service` with 32 MiB message limits.
    machine_server,
    machine::machine_service_server::MachineService,
    MachineServiceServer
);
server_with_limits!(
    /// A `StorageService` server for `service` with 32 MiB message limits.
    storage_server,
    storage::storage_service_server::StorageService,
    StorageServiceServer
);
server_with_limits!(
    /// A COSI `State` server for `service` with 32 MiB message limits.
    state_server,
    cosi::resource::state_server::State,
    StateServer
);
