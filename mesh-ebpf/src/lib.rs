// The programs live in the `mesh` binary (built for bpfel-unknown-none by meshctl's build
// script); this empty library lets meshctl take a build-dependency on the crate so cargo
// rebuilds the object when its sources or mesh-common change.
#![no_std]
