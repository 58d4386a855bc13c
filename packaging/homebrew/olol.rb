# Homebrew formula (macOS and Linux), built from source in a virtualenv:
#   brew install --formula packaging/homebrew/olol.rb      (or from a tap)
#   brew services start olol                               # the agent: olol server
# OLOL's dependencies (grpcio, numpy, aiohttp, ...) come as wheels from PyPI, so the
# formula installs them with pip, as taps may (homebrew/core would want resources).
class Olol < Formula
  include Language::Python::Virtualenv

  desc "One LLM cluster out of many Ollama / llama.cpp hosts"
  homepage "https://github.com/K2/olol"
  url "https://github.com/K2/olol.git", tag: "v0.2.0"
  license "MIT"
  head "https://github.com/K2/olol.git", branch: "main"

  depends_on "python@3.11"

  def install
    virtualenv_create(libexec, "python3.11")
    system libexec/"bin/python", "-m", "pip", "install", "--no-cache-dir", buildpath
    bin.install_symlink libexec/"bin/olol"
    (etc/"olol").install Dir["packaging/common/config/*.toml"]
  end

  def caveats
    <<~EOS
      Settings are in #{etc}/olol/ (proxy.toml, server.toml, rpc-server.toml).
      `brew services start olol` runs the agent (olol server) on this host.
      The cluster endpoint: olol proxy --config #{etc}/olol/proxy.toml
      For the llamacpp backend: brew install llama.cpp
    EOS
  end

  service do
    run [opt_bin/"olol", "server", "--config", etc/"olol/server.toml"]
    keep_alive true
    log_path var/"log/olol-server.log"
    error_log_path var/"log/olol-server.log"
  end

  test do
    assert_match "olol #{version}", shell_output("#{bin}/olol version")
  end
end
