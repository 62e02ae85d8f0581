package cli

import "github.com/spf13/cobra"

// examples are the `--help` examples of the commands that do not carry
// their own next to their flags, by command path without "tandem ". A
// test (TestEveryCommandHasAnExample) fails when a command has neither,
// so a new command cannot ship without one.
var examples = map[string]string{
	"serve": `  tandem serve -c /etc/tandem/tandem.yaml
  tandem reload -c /etc/tandem/tandem.yaml --by alice   # reload, recorded as alice's change (config.reload)
  systemctl kill -s HUP tandem     # reload too, recorded as by "unknown (signal)"`,
	"reload": `  tandem reload -c /etc/tandem/tandem.yaml --by alice
  tandem audit show -c /etc/tandem/tandem.yaml --type config.reload,config.change --since 1h`,
	"demo": `  tandem demo                       # prints the ssh commands to try; Ctrl-C stops it
  make demo                         # the same, with the build's progress shown first`,
	"config check": `  tandem config check -c /etc/tandem/tandem.yaml
  tandem config check -c new.yaml && cp new.yaml /etc/tandem/tandem.yaml`,
	"ca public": `  tandem ca public -c /etc/tandem/tandem.yaml --kind user > tandem_user_ca.pub   # for targets (TrustedUserCAKeys)
  tandem ca public --kind host                                                  # for known_hosts (@cert-authority)`,
	"target-config": `  tandem target-config -c /etc/tandem/tandem.yaml > /etc/ssh/sshd_config.d/tandem.conf
  sshd -t && systemctl reload ssh`,
	"audit verify": `  tandem audit verify -c /etc/tandem/tandem.yaml
  tandem audit verify --deep -c /etc/tandem/tandem.yaml     # also re-check every record's canonical form
  tandem audit verify --data ./copy-of-data --pubkey audit.pub --witness witness.log   # an auditor's copy
  tandem audit verify -c /etc/tandem/tandem.yaml --witness-syslog /var/log/central/tandem.log   # against a collector's copy`,
	"audit recover": `  tandem audit verify -c /etc/tandem/tandem.yaml            # first see what is damaged
  tandem audit recover -c /etc/tandem/tandem.yaml --reason "INC-42: disk full, records.log cut"`,
	"audit pubkey": `  tandem audit pubkey -c /etc/tandem/tandem.yaml > tandem-audit.pub   # hand this to the auditors`,
	"audit proof":  `  tandem audit proof -c /etc/tandem/tandem.yaml --index 4711 --json`,
	"audit show": `  tandem audit show -c /etc/tandem/tandem.yaml --since 24h --type session.start,session.end
  tandem audit show --person bob --since 2026-11-01T00:00:00Z --json
  tandem audit show --request 1a2b3c4d          # everything done under an access request`,
	"version":        `  tandem version`,
	"locks":          `  tandem locks -c /etc/tandem/tandem.yaml`,
	"recording list": `  tandem recording list -c /etc/tandem/tandem.yaml --as rita --tenant schule-nord --since 24h`,
	"recording export": `  tandem recording export -c /etc/tandem/tandem.yaml --as rita 7f3a9c01de > 7f3a9c01de.cast
  asciinema play 7f3a9c01de.cast`,
	"replay":           `  tandem replay -c /etc/tandem/tandem.yaml --as rita 7f3a9c01de --speed 4 --skip-to joined`,
	"recording replay": `  tandem recording replay -c /etc/tandem/tandem.yaml --as rita 7f3a9c01de --speed 4`,
}

// addExamples fills in examples for commands that have none of their own.
func addExamples(cmd *cobra.Command) {
	path := cmd.CommandPath()
	if len(path) > len("tandem ") {
		path = path[len("tandem "):]
	}
	if cmd.Example == "" {
		cmd.Example = examples[path]
	}
	for _, sub := range cmd.Commands() {
		addExamples(sub)
	}
}
