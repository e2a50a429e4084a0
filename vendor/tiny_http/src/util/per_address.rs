//! Codara patch: open connections per client IP address (see ARCHITECTURE.md, Decisions).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections per IP address, shared by the accept thread and the slots it hands out.
#[derive(Clone, Default)]
pub struct PerAddress {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; the count drops when this is dropped.
pub struct AddressSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerAddress {
    /// Counts a connection from `ip`, unless `max` from it are open already.
    pub fn try_take(&self, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        // An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d; count it as a.b.c.d.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            open: Arc::clone(&self.open),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PerAddress;
    use std::net::IpAddr;

    #[test]
    fn caps_each_address_and_frees_on_drop() {
        let per_address = PerAddress::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = per_address.try_take(a, 2).unwrap();
        let _second = per_address.try_take(mapped, 2).unwrap();
        assert!(per_address.try_take(a, 2).is_none(), "mapped counts as v4");
        assert!(per_address.try_take(b, 2).is_some());
        drop(first);
        assert!(per_address.try_take(a, 2).is_some());
    }
}
