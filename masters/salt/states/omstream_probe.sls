# A harmless state for trying `state_apply`: keeps a directory in the minion's cache.
omstream_probe_dir:
  file.directory:
    - name: {{ opts['cachedir'] }}/omstream-probe
    - makedirs: True
