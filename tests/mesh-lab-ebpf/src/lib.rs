//! Names and layout the lab-only XDP programs share with the lab (`mesh-lab`).
#![no_std]

/// Generator program: restores the header template, redirects to `GEN_TARGET`.
pub const PROG_GEN: &str = "lab_gen";
/// Counter program: counts into `DELIVERED` and drops.
pub const PROG_COUNT: &str = "lab_count";
/// Passes every frame: the far end of a lab wire (see `lab_pass`).
pub const PROG_PASS: &str = "lab_pass";
/// `Array<u32>`, one entry: the ifindex the generator sends on.
pub const GEN_TARGET: &str = "GEN_TARGET";
/// `Array<[u8; GEN_TEMPLATE_LEN]>`, one entry: the header restored in every frame.
pub const GEN_TEMPLATE: &str = "GEN_TEMPLATE";
/// `Array<u32>`, two entries: how many flows the generator spreads frames over (by L4
/// source port, 0 or 1: none) and the first source port.
pub const GEN_FLOWS: &str = "GEN_FLOWS";
pub const GEN_FLOWS_COUNT: u32 = 0;
pub const GEN_FLOWS_FIRST_PORT: u32 = 1;
/// `PerCpuArray<u32>`, one entry: frames the generator sent on each CPU.
pub const GEN_SEQ: &str = "GEN_SEQ";
/// `PerCpuArray<u64>`, one entry: frames the counter saw.
pub const DELIVERED: &str = "DELIVERED";
/// Header bytes the generator restores: Ethernet and an option-less IPv4 header.
pub const GEN_TEMPLATE_LEN: usize = 34;

/// Foreign programs attached the way Cilium attaches its own (same names, same hooks,
/// same verdicts), each counting the frames it sees into `FOREIGN_SEEN`.
pub const PROG_CIL_XDP: &str = "cil_xdp_entry";
/// At TCX (or clsact) ingress; returns `TC_ACT_OK`, ending the chain as Cilium does.
pub const PROG_CIL_FROM_NETDEV: &str = "cil_from_netdev";
/// At TCX (or clsact) egress; returns `TC_ACT_OK`.
pub const PROG_CIL_TO_NETDEV: &str = "cil_to_netdev";
/// A second ingress program (Cilium has `cil_from_host`), for a foreign agent that
/// attaches at the head of the chain, ahead of ours; returns `TC_ACT_OK`.
pub const PROG_CIL_FROM_HOST: &str = "cil_from_host";
/// `PerCpuArray<u64>`, one entry per foreign program, in the order above.
pub const FOREIGN_SEEN: &str = "FOREIGN_SEEN";
pub const SEEN_XDP: u32 = 0;
pub const SEEN_FROM_NETDEV: u32 = 1;
pub const SEEN_TO_NETDEV: u32 = 2;
pub const SEEN_FROM_HOST: u32 = 3;
