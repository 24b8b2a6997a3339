//! `bench scale`: placeholder while the routing core is built.
