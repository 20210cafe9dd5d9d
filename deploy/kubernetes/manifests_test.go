// Package kubernetes holds callbridge's Kubernetes manifests (the YAML files
// beside this one, applied with kustomize) and the test that validates them
// strictly against the Kubernetes API types, since no cluster runs in CI.
//
// Run `go test ./deploy/kubernetes/ -update` after changing freeswitch-conf/:
// it regenerates freeswitch-conf.yaml, the ConfigMap FreeSWITCH reads it from.
package kubernetes

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate freeswitch-conf.yaml from ../../freeswitch-conf")

// cnpgSecret is the secret CloudNativePG creates for a Cluster named
// callbridge-db's application user; its "uri" key is a libpq URL.
const cnpgSecret = "callbridge-db-app"

// objects is every object of the kustomization, decoded strictly.
type objects struct {
	namespaces   []*corev1.Namespace
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     []*corev1.Service
	statefulSets []*appsv1.StatefulSet
	daemonSets   []*appsv1.DaemonSet
	jobs         []*batchv1.Job
	pdbs         []*policyv1.PodDisruptionBudget
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind)
	}
	return k
}

func load(t *testing.T) (kustomization, objects) {
	t.Helper()
	k := readKustomization(t)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	res := slices.Clone(k.Resources)
	sort.Strings(res)
	if !slices.Equal(files, res) {
		t.Fatalf("kustomization.yaml resources %v; the folder has %v", res, files)
	}
	o := objects{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, f := range k.Resources {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if err := o.add([]byte(doc)); err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
		}
	}
	return k, o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// add decodes one document into its API type, refusing unknown and
// duplicate fields, and checks its name.
func (o *objects) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj interface{ GetName() string }
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		v := &corev1.Namespace{}
		o.namespaces, obj = append(o.namespaces, v), v
	case "v1 ConfigMap":
		v := &corev1.ConfigMap{}
		obj = v
		defer func() { o.configMaps[v.Name] = v }()
	case "v1 Secret":
		v := &corev1.Secret{}
		obj = v
		defer func() { o.secrets[v.Name] = v }()
	case "v1 Service":
		v := &corev1.Service{}
		o.services, obj = append(o.services, v), v
	case "apps/v1 StatefulSet":
		v := &appsv1.StatefulSet{}
		o.statefulSets, obj = append(o.statefulSets, v), v
	case "apps/v1 DaemonSet":
		v := &appsv1.DaemonSet{}
		o.daemonSets, obj = append(o.daemonSets, v), v
	case "batch/v1 Job":
		v := &batchv1.Job{}
		o.jobs, obj = append(o.jobs, v), v
	case "policy/v1 PodDisruptionBudget":
		v := &policyv1.PodDisruptionBudget{}
		o.pdbs, obj = append(o.pdbs, v), v
	default:
		return fmt.Errorf("unexpected %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
		return fmt.Errorf("%s %q: %s", tm.Kind, obj.GetName(), strings.Join(errs, "; "))
	}
	return nil
}

// pod is a workload's pod template with its name, for messages.
type pod struct {
	owner    string
	selector *metav1.LabelSelector
	tmpl     corev1.PodTemplateSpec
}

func (o objects) pods() []pod {
	var ps []pod
	for _, s := range o.statefulSets {
		ps = append(ps, pod{"StatefulSet " + s.Name, s.Spec.Selector, s.Spec.Template})
	}
	for _, d := range o.daemonSets {
		ps = append(ps, pod{"DaemonSet " + d.Name, d.Spec.Selector, d.Spec.Template})
	}
	for _, j := range o.jobs {
		ps = append(ps, pod{"Job " + j.Name, nil, j.Spec.Template})
	}
	return ps
}

func TestManifestsReferencesResolve(t *testing.T) {
	k, o := load(t)
	images := map[string]bool{}
	for _, im := range k.Images {
		if im.NewTag == "" || im.NewTag == "latest" {
			t.Errorf("kustomization image %s: pin a tag", im.Name)
		}
		images[im.Name] = true
	}
	if len(o.namespaces) != 1 || o.namespaces[0].Name != k.Namespace {
		t.Errorf("want one Namespace named %q", k.Namespace)
	}
	for _, p := range o.pods() {
		if p.selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.selector)
			if err != nil {
				t.Fatalf("%s: selector: %v", p.owner, err)
			}
			if !sel.Matches(labels.Set(p.tmpl.Labels)) {
				t.Errorf("%s: selector does not match its pod template's labels", p.owner)
			}
		}
		spec := p.tmpl.Spec
		for _, v := range spec.Volumes {
			if cm := v.ConfigMap; cm != nil {
				m, ok := o.configMaps[cm.Name]
				if !ok {
					t.Errorf("%s: volume %s: no ConfigMap %s", p.owner, v.Name, cm.Name)
					continue
				}
				for _, it := range cm.Items {
					if _, ok := m.Data[it.Key]; !ok {
						t.Errorf("%s: volume %s: ConfigMap %s has no key %s", p.owner, v.Name, cm.Name, it.Key)
					}
				}
			}
		}
		for _, c := range spec.Containers {
			who := p.owner + " container " + c.Name
			if !images[c.Image] {
				t.Errorf("%s: image %q is not one kustomization.yaml pins", who, c.Image)
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && o.configMaps[ef.ConfigMapRef.Name] == nil {
					t.Errorf("%s: envFrom: no ConfigMap %s", who, ef.ConfigMapRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if ref.Name == cnpgSecret {
					if ref.Key != "uri" {
						t.Errorf("%s: %s: CloudNativePG's app secret has the URL under \"uri\", not %q", who, e.Name, ref.Key)
					}
					continue
				}
				s, ok := o.secrets[ref.Name]
				if !ok {
					t.Errorf("%s: %s: no Secret %s", who, e.Name, ref.Name)
				} else if _, ok := s.StringData[ref.Key]; !ok {
					t.Errorf("%s: %s: Secret %s has no key %s", who, e.Name, ref.Name, ref.Key)
				}
			}
			ports := map[string]bool{}
			for _, cp := range c.Ports {
				ports[cp.Name] = true
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr == nil {
					continue
				}
				var port string
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port.String()
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port.String()
				}
				if port != "" && !ports[port] {
					t.Errorf("%s: a probe uses port %q, which the container does not name", who, port)
				}
			}
		}
	}
	for _, svc := range o.services {
		matched := false
		for _, p := range o.pods() {
			if p.selector != nil && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.tmpl.Labels)) {
				matched = true
				for _, sp := range svc.Spec.Ports {
					if !slices.ContainsFunc(p.tmpl.Spec.Containers, func(c corev1.Container) bool {
						return slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == sp.TargetPort.String() })
					}) {
						t.Errorf("Service %s: targetPort %s is no port of %s", svc.Name, sp.TargetPort.String(), p.owner)
					}
				}
			}
		}
		if !matched {
			t.Errorf("Service %s selects no workload", svc.Name)
		}
	}
	for _, pdb := range o.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(o.statefulSets, func(s *appsv1.StatefulSet) bool { return sel.Matches(labels.Set(s.Spec.Template.Labels)) }) {
			t.Errorf("PodDisruptionBudget %s selects no controller", pdb.Name)
		}
	}
}

// TestControllers checks what the controllers need to be drained and
// replaced safely, against callbridge's own settings.
func TestControllers(t *testing.T) {
	_, o := load(t)
	if len(o.statefulSets) != 1 {
		t.Fatalf("want one controller StatefulSet, got %d", len(o.statefulSets))
	}
	ss := o.statefulSets[0]
	cfg := o.configMaps["callbridge-config"]
	if cfg == nil {
		t.Fatal("no ConfigMap callbridge-config")
	}
	documented := documentedSettings(t)
	for key := range cfg.Data {
		if !documented[key] {
			t.Errorf("callbridge-config sets %s, which the settings table of docs/configuration.md does not document", key)
		}
		if regexp.MustCompile(`PASSWORD|TOKEN|SECRET|DATABASE_URL`).MatchString(key) {
			t.Errorf("callbridge-config holds %s: secrets belong in a Secret", key)
		}
	}
	if n := ss.Spec.Replicas; n == nil || *n < 2 {
		t.Errorf("controllers: want at least 2 replicas")
	}
	spec := ss.Spec.Template.Spec
	c := spec.Containers[0]
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("controller args %v, want [serve]", c.Args)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("controller readiness probe must GET /readyz")
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("controller liveness probe must GET /healthz")
	}
	drain, err := time.ParseDuration(cfg.Data["CALLBRIDGE_DRAIN_TIMEOUT"])
	if err != nil {
		t.Fatalf("CALLBRIDGE_DRAIN_TIMEOUT: %v", err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("controller: want a preStop pause before SIGTERM starts the drain")
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if need := pause + drain + 10*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v: a drain needs at least %v (preStop %v + CALLBRIDGE_DRAIN_TIMEOUT %v + 10 s to flush)", grace, need, pause, drain)
	}
	spool := cfg.Data["CALLBRIDGE_SPOOL_DIR"]
	var persistent bool
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(spool+"/", strings.TrimSuffix(m.MountPath, "/")+"/") {
			persistent = slices.ContainsFunc(ss.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name })
		}
	}
	if spool == "" || !persistent {
		t.Errorf("the CDR spool %q must be on a volume claim of the StatefulSet, so it survives the pod", spool)
	}
	if len(o.pdbs) != 1 {
		t.Errorf("want a PodDisruptionBudget for the controllers")
	}
	if len(o.jobs) != 1 || !slices.Equal(o.jobs[0].Spec.Template.Spec.Containers[0].Args, []string{"migrate"}) {
		t.Errorf("want one Job running `callbridge migrate`")
	}
}

// documentedSettings returns the CALLBRIDGE_* variables docs/configuration.md
// documents.
func documentedSettings(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(CALLBRIDGE_[A-Z0-9_]+)`").FindAllSubmatch(b, -1) {
		set[string(m[1])] = true
	}
	if len(set) < 10 {
		t.Fatalf("docs/configuration.md documents only %d settings", len(set))
	}
	return set
}

// TestFreeSWITCH checks the FreeSWITCH DaemonSet: host networking, its
// settings are vars.xml's, and its configuration is freeswitch-conf/.
func TestFreeSWITCH(t *testing.T) {
	_, o := load(t)
	if len(o.daemonSets) != 1 {
		t.Fatalf("want one FreeSWITCH DaemonSet")
	}
	ds := o.daemonSets[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("FreeSWITCH must run on host networking and resolve cluster names (ClusterFirstWithHostNet)")
	}
	// vars.xml and the gateway files read FS_* variables.
	confs, err := filepath.Glob("../../freeswitch-conf/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	gateways, err := filepath.Glob("../../freeswitch-conf/sip_profiles/external/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range append(confs, gateways...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\$(FS_[A-Z0-9_]+)`).FindAllSubmatch(b, -1) {
			known[string(m[1])] = true
		}
	}
	c := spec.Containers[0]
	var names []string
	for k := range o.configMaps["freeswitch-config"].Data {
		names = append(names, k)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "FS_") {
			names = append(names, e.Name)
		}
	}
	for _, n := range names {
		if !known[n] {
			t.Errorf("FreeSWITCH gets %s, which neither freeswitch-conf/vars.xml nor a gateway file reads", n)
		}
	}
	want, err := generatedConf()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("freeswitch-conf.yaml")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("freeswitch-conf.yaml is not freeswitch-conf/ as it is now: run go test ./deploy/kubernetes/ -update")
	}
	var items []string
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "freeswitch-conf" {
			for _, it := range v.ConfigMap.Items {
				if strings.ReplaceAll(it.Path, "/", "--") != it.Key {
					t.Errorf("freeswitch-conf item %s goes to %s", it.Key, it.Path)
				}
				items = append(items, it.Key)
			}
		}
	}
	var keys []string
	for k := range o.configMaps["freeswitch-conf"].Data {
		keys = append(keys, k)
	}
	sort.Strings(items)
	sort.Strings(keys)
	if !slices.Equal(items, keys) {
		t.Errorf("the DaemonSet mounts %v of freeswitch-conf; the ConfigMap has %v", items, keys)
	}
}

// generatedConf renders ../../freeswitch-conf's XML files as one
// ConfigMap, each file under its path with "/" written "--" (ConfigMap keys
// cannot hold "/"); the DaemonSet's items put them back in place.
func generatedConf() ([]byte, error) {
	root := "../../freeswitch-conf"
	data := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".xml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data[strings.ReplaceAll(filepath.ToSlash(rel), "/", "--")] = string(b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	cm := corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "freeswitch-conf", Labels: map[string]string{
			"app.kubernetes.io/name": "freeswitch", "app.kubernetes.io/part-of": "callbridge"}},
		Data: data,
	}
	b, err := yaml.Marshal(cm)
	if err != nil {
		return nil, err
	}
	head := "# Generated from freeswitch-conf/ by `go test ./deploy/kubernetes/ -update`; do not edit.\n"
	return append([]byte(head), b...), nil
}

// TestMain regenerates freeswitch-conf.yaml first under -update, so the
// tests then read it like any other manifest.
func TestMain(m *testing.M) {
	flag.Parse()
	if *update {
		b, err := generatedConf()
		if err == nil {
			err = os.WriteFile("freeswitch-conf.yaml", b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}
