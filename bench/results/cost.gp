
set terminal pngcairo size 1100,700 font "DejaVu Sans,11"
set output "cost.png"
set title "CPU per collection cycle (collector + libvirtd) against number of VMs, lower is better"
set xlabel "VMs (domains)"
set ylabel "CPU ms per cycle (log scale)"
set logscale xy
set xrange [70:30000]
set yrange [0.03:10000]
set grid
set key bottom right inside box opaque font ",9" spacing 1.1 width -8
set format y "%g"
plot "cost.dat" index 0 with linespoints lw 2 pt 7 title "(c) vmtel decode+derive+encode, no libvirt", "cost.dat" index 1 with linespoints lw 2 pt 5 title "(b) floor: bulk call (client + libvirtd)", "cost.dat" index 2 with linespoints lw 2 pt 9 title "(b) floor: per-domain calls (client + libvirtd)", "cost.dat" index 3 with linespoints lw 2 pt 13 title "(b) vmtel cycle, per-domain fallback, event loop on (client + libvirtd)", "cost.dat" index 4 with linespoints lw 2 pt 11 dt 2 title "(b) vmtel cycle, per-domain fallback, no event loop (client + libvirtd)", "peers.dat" index 0 with points pt 4 ps 2 lw 2 title "(b) vmtel run (default) at 1000 domains", "peers.dat" index 1 with points pt 6 ps 2 lw 2 title "(b) vmtel run (lean) at 1000 domains", "peers.dat" index 2 with points pt 8 ps 2 lw 2 title "(b) collectd at 1000 domains", "peers.dat" index 3 with points pt 10 ps 2 lw 2 title "(b) exporter at 1000 domains (reports 512)"
