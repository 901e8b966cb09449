// testcluster: a real kube-apiserver and etcd in one process, on loopback, for end-to-end tests.
//
//	testcluster [--dir DIR] [--kubeconfig FILE] [--port N] [--controller-manager BIN]
//
// Built by ./build from the module files beside it; ./with-cluster and ./ctl run it.
//
// Starts embedded etcd and an in-process kube-apiserver with its own CA, an admin client
// certificate (O=system:masters) and a ServiceAccount signing key; writes the kubeconfig once
// /readyz answers ok; starts kube-controller-manager (a child process) when its binary is given
// or lies beside this one; prints "READY <kubeconfig>", and stops cleanly on SIGTERM or SIGINT.
// Started again on the same DIR, it keeps its port, data, CA and signing key, so clients and
// ServiceAccount tokens from before the restart stay valid.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	basecompatibility "k8s.io/component-base/compatibility"
	logsapi "k8s.io/component-base/logs/api/v1"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

type pair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "testcluster: "+format+"\n", a...)
	os.Exit(1)
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		die("key: %v", err)
	}
	return k
}

func encode(der []byte, k *ecdsa.PrivateKey) pair {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		die("parse cert: %v", err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		die("marshal key: %v", err)
	}
	return pair{c, k,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})}
}

// beside names a file next to this executable, or "" when there is none.
func beside(name string) string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// load reads a CA written by an earlier run on the same DIR; false when there is none.
func load(certFile, keyFile string) (pair, bool) {
	cp, err1 := os.ReadFile(certFile)
	kp, err2 := os.ReadFile(keyFile)
	if err1 != nil || err2 != nil {
		return pair{}, false
	}
	cb, _ := pem.Decode(cp)
	kb, _ := pem.Decode(kp)
	if cb == nil || kb == nil {
		die("unreadable CA in %s", filepath.Dir(certFile))
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		die("CA key: %v", err)
	}
	return encode(cb.Bytes, k), true
}

var serial = time.Now().UnixNano()

func template(cn string, orgs []string) *x509.Certificate {
	serial++
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
	}
}

func newCA() pair {
	k := newKey()
	t := template("testcluster-ca", nil)
	t.IsCA, t.BasicConstraintsValid = true, true
	t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, t, t, &k.PublicKey, k)
	if err != nil {
		die("ca: %v", err)
	}
	return encode(der, k)
}

func (ca pair) issue(cn string, orgs, dns []string, ips []net.IP, usage x509.ExtKeyUsage) pair {
	k := newKey()
	t := template(cn, orgs)
	t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	t.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	t.DNSNames, t.IPAddresses = dns, ips
	der, err := x509.CreateCertificate(rand.Reader, t, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		die("issue %s: %v", cn, err)
	}
	return encode(der, k)
}

// taken holds the ports this process chose, so it never hands out one twice: a port closed
// after the check is often the next one the kernel offers.
var taken = map[int]bool{}

func freePort() int {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			die("free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !taken[p] {
			taken[p] = true
			return p
		}
	}
}

func write(path string, data []byte) string {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		die("write %s: %v", path, err)
	}
	return path
}

func main() {
	dir := flag.String("dir", "", "state directory (default: a new temp dir, removed at exit)")
	kubeconfig := flag.String("kubeconfig", "", "where to write the admin kubeconfig (default DIR/kubeconfig)")
	port := flag.Int("port", 0, "apiserver secure port (default: a free one)")
	kcm := flag.String("controller-manager", beside("kube-controller-manager"),
		"kube-controller-manager binary to run against the apiserver (namespace lifecycle, garbage collection,\n"+
			"default ServiceAccounts, Deployment/StatefulSet controllers); empty: none")
	flag.Parse()
	temp := *dir == ""
	if temp {
		d, err := os.MkdirTemp("", "testcluster-")
		if err != nil {
			die("temp dir: %v", err)
		}
		*dir = d
	}
	pki := filepath.Join(*dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		die("mkdir: %v", err)
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(*dir, "kubeconfig")
	}
	// A restart on the same DIR keeps the port, so kubeconfigs written before it stay usable.
	portFile := filepath.Join(*dir, "port")
	if *port == 0 {
		if b, err := os.ReadFile(portFile); err == nil {
			fmt.Sscanf(string(b), "%d", port)
		}
	}
	if *port == 0 {
		*port = freePort()
	}
	taken[*port] = true
	write(portFile, []byte(fmt.Sprintf("%d\n", *port)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// PKI: one CA signs the serving cert and the admin client cert. A restart on the same DIR
	// reuses them, so kubeconfigs and ServiceAccount tokens issued before it stay valid.
	caFile := filepath.Join(pki, "ca.crt")
	saFile := filepath.Join(pki, "sa.key")
	ca, reused := load(caFile, filepath.Join(pki, "ca.key"))
	if !reused {
		ca = newCA()
		write(caFile, ca.certPEM)
		write(filepath.Join(pki, "ca.key"), ca.keyPEM)
		serving := ca.issue("kube-apiserver", nil,
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}, x509.ExtKeyUsageServerAuth)
		write(filepath.Join(pki, "apiserver.crt"), serving.certPEM)
		write(filepath.Join(pki, "apiserver.key"), serving.keyPEM)
		saDer, _ := x509.MarshalECPrivateKey(newKey())
		write(saFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDer}))
	}
	admin := ca.issue("admin", []string{"system:masters"}, nil, nil, x509.ExtKeyUsageClientAuth)

	// etcd, embedded, loopback only.
	ecfg := embed.NewConfig()
	ecfg.Name = "testcluster"
	ecfg.Dir = filepath.Join(*dir, "etcd")
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort())}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort())}
	ecfg.ListenClientUrls, ecfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ecfg.ListenPeerUrls, ecfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	ecfg.UnsafeNoFsync = true
	ecfg.LogLevel = "error"
	etcd, err := embed.StartEtcd(ecfg)
	if err != nil {
		die("etcd: %v", err)
	}
	select {
	case <-etcd.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		die("etcd not ready in 60 s")
	}

	// kube-apiserver, in-process.
	s := apioptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--etcd-servers=" + cu.String(),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *port),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--client-ca-file=" + caFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saFile,
		"--service-account-signing-key-file=" + saFile,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none", // the kubernetes Service cannot point at loopback
		"--disable-admission-plugins=ServiceAccount",
		"--v=0",
	}
	if err := fs.Parse(args); err != nil {
		die("apiserver flags: %v", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		die("component globals: %v", err)
	}
	fg := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(s.Logs, fg); err != nil {
		die("logs: %v", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		die("complete: %v", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		die("validate: %v", utilerrors.NewAggregate(errs))
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- apiapp.Run(ctx, completed) }()

	// Ready when /readyz says ok to the admin.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.certPEM)
	adminTLS, err := tls.X509KeyPair(admin.certPEM, admin.keyPEM)
	if err != nil {
		die("admin keypair: %v", err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{adminTLS}}}}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)
	deadline := time.Now().Add(180 * time.Second)
	for {
		if time.Now().After(deadline) {
			die("apiserver not ready in 180 s")
		}
		select {
		case err := <-apiDone:
			die("apiserver exited: %v", err)
		default:
		}
		if r, err := client.Get(server + "/readyz"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode == 200 && string(b) == "ok" {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	b64 := base64.StdEncoding.EncodeToString
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testcluster
  cluster: {server: %q, certificate-authority-data: %s}
users:
- name: admin
  user: {client-certificate-data: %s, client-key-data: %s}
contexts:
- name: testcluster
  context: {cluster: testcluster, user: admin}
current-context: testcluster
`, server, b64(ca.certPEM), b64(admin.certPEM), b64(admin.keyPEM))
	tmp := *kubeconfig + ".tmp"
	write(tmp, []byte(kc))
	if err := os.Rename(tmp, *kubeconfig); err != nil {
		die("kubeconfig: %v", err)
	}
	// kube-controller-manager as a child process (its command sets process-wide state that would
	// clash with the in-process apiserver's). Ready once the default ServiceAccount exists.
	var cm *exec.Cmd
	if *kcm != "" {
		logf, err := os.Create(filepath.Join(*dir, "kube-controller-manager.log"))
		if err != nil {
			die("controller-manager log: %v", err)
		}
		cm = exec.Command(*kcm, "--kubeconfig="+*kubeconfig, "--secure-port=0", "--leader-elect=false",
			"--use-service-account-credentials=false", "--controllers=*",
			"--service-account-private-key-file="+saFile, "--root-ca-file="+caFile,
			"--cluster-signing-cert-file="+caFile, "--cluster-signing-key-file="+filepath.Join(pki, "ca.key"))
		cm.Stdout, cm.Stderr = logf, logf
		if err := cm.Start(); err != nil {
			die("controller-manager: %v", err)
		}
		for i := 0; ; i++ {
			if i == 300 {
				die("controller-manager: no default ServiceAccount after 60 s (see %s)", logf.Name())
			}
			if r, err := client.Get(server + "/api/v1/namespaces/default/serviceaccounts/default"); err == nil {
				r.Body.Close()
				if r.StatusCode == 200 {
					break
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	fmt.Println("READY " + *kubeconfig)

	select {
	case <-ctx.Done():
	case err := <-apiDone:
		fmt.Fprintf(os.Stderr, "testcluster: apiserver exited: %v\n", err)
	}
	stopping := time.Now()
	if cm != nil {
		// It keeps no state of its own (no leader election, everything is in the apiserver),
		// and its graceful stop takes several seconds: a short grace, then SIGKILL.
		_ = cm.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = cm.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = cm.Process.Kill()
			<-exited
		}
	}
	// Clients with open watches (the e2e suite's operator and data plane) hold the apiserver's
	// graceful shutdown until its request timeout (60 s), and etcd's Close then waits for the
	// apiserver's connections too. A test control plane need not wait for either: every write
	// that returned is in etcd's WAL already, and a restart on the same DIR replays it.
	select {
	case <-apiDone:
		etcd.Close()
	case <-time.After(3 * time.Second):
		fmt.Fprintln(os.Stderr, "testcluster: apiserver still draining watches after 3 s; exiting without waiting")
	}
	fmt.Fprintf(os.Stderr, "testcluster: stopped in %.1f s\n", time.Since(stopping).Seconds())
	if temp {
		os.RemoveAll(*dir)
	}
}
