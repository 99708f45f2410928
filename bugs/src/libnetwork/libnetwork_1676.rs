#![doc = include_str!("libnetwork_1676.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, Once, WaitGroup};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "libnetwork_1676",
        project: "libnetwork",
        upstream: "https://github.com/docker/libnetwork/pull/1676",
        category: "Data race (a global set as the \"initialised\" flag before initialisation is done)",
        expected: primitives::Verdict::Race,
        kernel: test_libnetwork1676,
        walkthrough: include_str!("libnetwork_1676.md"),
        source: Source::Diff("docker/libnetwork 635d4439^ iptables/iptables.go, iptables/firewalld.go"),
        fix: Fix::Upstream("docker/libnetwork 635d4439"),
        review: "faithful after mends: Checked against docker/libnetwork 635d4439^ and 635d4439 (iptables/iptables.go, iptables/firewalld.go), merge 606a7aac, PR #1676 and issue #1677: right bug, shape, fix and race verdict, honest failure; mend the Once sentence (probeOnce and firewalldOnce), unsourced claims about what -race reports, the wording of #1677's failures, two Deviations lines and minor wording.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `Table`.
const NAT: &str = "nat";

/// `Action`: `Append` and `Delete`.
const APPEND: &str = "-A";
const DELETE: &str = "-D";

/// `xLockWaitMsg`: what iptables prints while it waits for the xtables lock.
const X_LOCK_WAIT_MSG: &str = "Another app is currently holding the xtables lock; waiting";

/// `ErrIptablesNotFound`.
const ERR_IPTABLES_NOT_FOUND: &str = "Iptables not found";

/// The host: the `iptables` binary and the kernel's xtables lock. Nothing here is Go memory,
/// so nothing is checked for races.
struct Host {
    /// The xtables lock every iptables process takes for its whole run (held by the iptables
    /// process, not by Go code).
    xtables_lock: Mutex,
}

impl Host {
    /// `exec.LookPath("iptables")`.
    fn look_path(&self, _file: &str) -> Result<&'static str, String> {
        Ok("/sbin/iptables")
    }

    /// `exec.Command("modprobe", "-va", module).CombinedOutput()`: the modules load.
    fn modprobe(&self, _module: &str) -> Result<String, String> {
        Ok(String::new())
    }

    /// `exec.Command(path, args...).CombinedOutput()`: one iptables process. With `--wait` it
    /// waits for the xtables lock; without, it gives up at once if another holds it.
    fn iptables(&self, _path: &str, args: &[&str]) -> Result<String, String> {
        if args.first() == Some(&"--wait") {
            self.xtables_lock.lock();
        } else if !self.xtables_lock.try_lock() {
            return Err(
                "Another app is currently holding the xtables lock. Perhaps you want to use \
                 the -w option?\n (exit status 4)"
                    .to_string(),
            );
        }
        let _unlock = defer(|| self.xtables_lock.unlock());
        let out = match args
            .iter()
            .position(|a| a.starts_with('-') && *a != "--wait")
        {
            Some(k) if args[k] == "--version" => "iptables v1.4.21\n",
            // `-t nat -C ...`: no rule exists yet (exit status 1).
            Some(k) if args.get(k + 2) == Some(&"-C") => {
                return Err("iptables: No chain/target/match by that name. (exit status 1)".into())
            }
            _ => "",
        };
        Ok(out.to_string())
    }
}

/// The package `iptables`: its globals, and the host it runs on.
struct Iptables {
    iptables_path: Shared<&'static str>,
    supports_xlock: Shared<bool>,
    supports_c_opt: Shared<bool>,
    /// used to lock iptables commands if xtables lock is not supported
    best_effort_lock: Mutex,
    /// `firewalld.go`: is Firewalld service running
    firewalld_running: Shared<bool>,
    /// Before the fix.
    probe_once: Once,
    firewalld_once: Once,
    /// The fix.
    init_once: Once,
    host: Host,
    variant: Variant,
}

impl Iptables {
    /// `probe`: loads the NAT and conntrack modules (their failures are only logged).
    fn probe(&self) {
        let _ = self.host.modprobe("nf_nat");
        let _ = self.host.modprobe("xt_conntrack");
    }

    /// `initFirewalld`: on this host there is no D-Bus system bus, so `FirewalldInit` fails at
    /// `newConnection` and leaves `firewalldRunning` false (the failure is only logged).
    fn init_firewalld(&self) {
        let _ = self.firewalld_init();
    }

    /// `FirewalldInit`, up to its first failure.
    fn firewalld_init(&self) -> Result<(), String> {
        Err("Failed to connect to D-Bus system bus".into())
    }

    /// `detectIptables` (the fix).
    fn detect_iptables(&self) {
        let Ok(path) = self.host.look_path("iptables") else {
            return;
        };
        self.iptables_path.set(path);
        self.supports_xlock
            .set(self.host.iptables(path, &["--wait", "-L", "-n"]).is_ok());
        let Ok((mj, mn, mc)) = self.get_version() else {
            return; // logrus.Warnf("Failed to read iptables version: %v", err)
        };
        self.supports_c_opt.set(supports_c_option(mj, mn, mc));
    }

    /// `initIptables` (the fix).
    fn init_iptables(&self) {
        self.probe();
        self.init_firewalld();
        self.detect_iptables();
    }

    /// `initCheck`.
    fn init_check(&self) -> Result<(), String> {
        if self.variant.fixed() {
            self.init_once.do_(|| self.init_iptables());
            if self.iptables_path.get().is_empty() {
                return Err(ERR_IPTABLES_NOT_FOUND.into());
            }
            return Ok(());
        }
        if self.iptables_path.get().is_empty() {
            self.probe_once.do_(|| self.probe());
            self.firewalld_once.do_(|| self.init_firewalld());
            let Ok(path) = self.host.look_path("iptables") else {
                return Err(ERR_IPTABLES_NOT_FOUND.into());
            };
            self.iptables_path.set(path);
            self.supports_xlock
                .set(self.host.iptables(path, &["--wait", "-L", "-n"]).is_ok());
            let Ok((mj, mn, mc)) = self.get_version() else {
                return Ok(()); // logrus.Warnf("Failed to read iptables version: %v", err)
            };
            self.supports_c_opt.set(supports_c_option(mj, mn, mc));
        }
        Ok(())
    }

    /// `ProgramRule`: adds the rule only if it is not there yet (removes it only if it is).
    fn program_rule(
        &self,
        table: &'static str,
        chain: &'static str,
        action: &'static str,
        args: &[&'static str],
    ) -> Result<(), String> {
        if self.exists(table, chain, args) != (action == DELETE) {
            return Ok(());
        }
        let mut a = vec!["-t", table, action, chain];
        a.extend_from_slice(args);
        self.raw_combined_output(a)
    }

    /// `Exists`: `exists(false, ...)`.
    fn exists(&self, table: &'static str, chain: &'static str, rule: &[&'static str]) -> bool {
        if self.variant.fixed() {
            if self.init_check().is_err() {
                // The exists() signature does not allow us to return an error, but at least
                // we can skip the (likely invalid) exec invocation.
                return false;
            }
        } else {
            let _ = self.init_check();
        }
        if self.supports_c_opt.get() {
            // if exit status is 0 then return true, the rule exists
            let mut a = vec!["-t", table, "-C", chain];
            a.extend_from_slice(rule);
            return self.Raw(a).is_ok();
        }
        // parse "iptables -S" for the rule (it checks rules in a specific chain
        // in a specific table and it is very unreliable)
        self.exists_raw(table, chain, rule)
    }

    /// `existsRaw`: the error of `iptables -S` is dropped.
    fn exists_raw(&self, table: &'static str, chain: &'static str, rule: &[&'static str]) -> bool {
        let rule_string = format!("{chain} {}\n", rule.join(" "));
        let path = self.iptables_path.get();
        let existing_rules = self
            .host
            .iptables(path, &["-t", table, "-S", chain])
            .unwrap_or_default();
        existing_rules.contains(&rule_string)
    }

    /// `Raw`: through firewalld's D-Bus passthrough if it runs, else `raw`.
    #[allow(non_snake_case)] // upstream's exported `Raw`, beside the unexported `raw`
    fn Raw(&self, args: Vec<&'static str>) -> Result<String, String> {
        // `if firewalldRunning { Passthrough(Iptables, args...) ... }`: firewalld never runs
        // on this host, so only the read of the flag is kept.
        let _ = self.firewalld_running.get();
        self.raw(args)
    }

    /// `raw`.
    fn raw(&self, mut args: Vec<&'static str>) -> Result<String, String> {
        self.init_check()?;
        let _unlock;
        if self.supports_xlock.get() {
            args.insert(0, "--wait");
        } else {
            self.best_effort_lock.lock();
            _unlock = defer(|| self.best_effort_lock.unlock());
        }
        // logrus.Debugf("%s, %v", iptablesPath, args)
        let path = self.iptables_path.get();
        let output = self
            .host
            .iptables(path, &args)
            .map_err(|err| format!("iptables failed: iptables {}: {err}", args.join(" ")))?;
        // ignore iptables' message about xtables lock
        if output.contains(X_LOCK_WAIT_MSG) {
            return Ok(String::new());
        }
        Ok(output)
    }

    /// `RawCombinedOutput`: an error for a failure or for any output.
    fn raw_combined_output(&self, args: Vec<&'static str>) -> Result<(), String> {
        match self.Raw(args) {
            Ok(output) if output.is_empty() => Ok(()),
            Ok(output) => Err(format!("{output} (<nil>)")),
            Err(err) => Err(format!(" ({err})")),
        }
    }

    /// `GetVersion`: reads the iptables version numbers.
    fn get_version(&self) -> Result<(u32, u32, u32), String> {
        let out = if self.variant.fixed() {
            self.host
                .iptables(self.iptables_path.get(), &["--version"])?
        } else {
            self.Raw(vec!["--version"])?
        };
        Ok(parse_version_numbers(&out))
    }
}

/// `parseVersionNumbers`: the first `v<major>.<minor>.<micro>` in the output.
fn parse_version_numbers(input: &str) -> (u32, u32, u32) {
    let line = input
        .split_whitespace()
        .find(|w| w.starts_with('v'))
        .unwrap_or("");
    let mut n = line
        .trim_start_matches('v')
        .split('.')
        .map(|x| x.parse().unwrap_or(0));
    (
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
        n.next().unwrap_or(0),
    )
}

/// `supportsCOption`: iptables -C, --check option was added in v.1.4.11
fn supports_c_option(mj: u32, mn: u32, mc: u32) -> bool {
    mj > 1 || (mj == 1 && (mn > 4 || (mn == 4 && mc >= 11)))
}

/// No upstream test: a network driver restarted into a burst of requests, two of which program
/// a NAT rule each, the first iptables calls of the process (issue #1677's log).
fn test_libnetwork1676(variant: Variant) {
    let ipt = Arc::new(Iptables {
        iptables_path: Shared::new("").named("iptablesPath"),
        supports_xlock: Shared::new(false).named("supportsXlock"),
        supports_c_opt: Shared::new(false).named("supportsCOpt"),
        best_effort_lock: Mutex::new().named("bestEffortLock"),
        firewalld_running: Shared::new(false).named("firewalldRunning"),
        probe_once: Once::new().named("probeOnce"),
        firewalld_once: Once::new().named("firewalldOnce"),
        init_once: Once::new().named("initOnce"),
        host: Host {
            xtables_lock: Mutex::new().named("xtables lock"),
        },
        variant,
    });

    let errs = Chan::new(2).named("errs");
    let wg = WaitGroup::new().named("wg");
    for proto in ["udp", "tcp"] {
        wg.add(1);
        let (ipt, errs, wg) = (ipt.clone(), errs.clone(), wg.clone());
        go_named("ProgramRule", move || {
            let _done = defer(|| wg.done());
            let args = [
                "-i",
                "pdnet",
                "-p",
                proto,
                "--dport",
                "53",
                "-j",
                "REDIRECT",
                "--to-port",
                "53",
            ];
            errs.send(ipt.program_rule(NAT, "PREROUTING", APPEND, &args).err());
        });
    }
    wg.wait();

    // The driver's requests fail if a rule could not be programmed.
    for _ in 0..2 {
        if let Some(Some(err)) = errs.recv() {
            panic!("assertion failed: ProgramRule: {err}");
        }
    }
}
